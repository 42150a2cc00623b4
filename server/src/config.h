// ServerConfig: how sluiced runs. Sources, highest precedence first: command-line flags,
// SLUICE_* environment variables, the --config file (INI/TOML `key = value`, the flag names
// without dashes). Every field has a default, so sluiced runs with no configuration at all.
#ifndef SLUICE_SERVER_SRC_CONFIG_H_
#define SLUICE_SERVER_SRC_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "sluice/options.h"

namespace sluice::server {

// One accepted bearer token. Unbound (operator) tokens act for the tenant a request names;
// bound tokens act only for their tenant.
struct TokenSpec {
  std::string token;
  std::optional<std::string> tenant;
};

struct ServerConfig {
  std::string data_dir = "sluice-data";        // the node's directory (shard-0/, admin.token)
  std::string grpc_listen = "127.0.0.1:7070";  // gRPC; port 0 picks a free port
  std::string http_listen = "127.0.0.1:7071";  // /healthz, /readyz, /metrics
  std::string port_file;                       // written once both listen (JSON)
  Durability durability = Durability::kSync;
  std::vector<TokenSpec> tokens;  // --token, --tokens-file
  bool no_auth = false;           // accept calls without a token (warned)
  std::string tls_cert;           // PEM; with tls_key, gRPC serves TLS only
  std::string tls_key;
  uint32_t max_message_bytes = 32u << 20;  // gRPC max receive message size
  SizeLimits limits;                       // engine per-field caps
  uint64_t default_lease_ms = 30'000;
  uint64_t refresh_lease_ms = 30'000;  // lease of floating-limit refresh tasks
  uint32_t reaper_interval_ms = 100;
  uint32_t max_lease_batch = 1000;
  uint32_t max_wait_ms = 60'000;
  uint32_t drain_timeout_ms = 10'000;  // SIGTERM: in-flight RPCs get this long
  uint32_t max_threads = 1024;         // gRPC sync-server threads; each blocking pool's threads
  uint32_t metrics_max_series = 100;   // per-queue / per-key series kept in /metrics
  uint32_t query_timeout_ms = 5'000;   // longest a Query may run (requests ask for less)
  uint32_t query_max_rows = 10'000;    // most rows a Query may return
  uint64_t query_max_result_bytes = 4u << 20;  // largest Query result
  std::string log_format = "json";
  std::string log_level = "info";
};

// Parses flags, environment and the config file. On --help, --version or a bad option it
// prints (usage or the error) and returns the process exit code in *exit_code with nullopt.
std::optional<ServerConfig> ParseConfig(int argc, char** argv, int* exit_code);

// Parses a token spec "TOKEN" or "TOKEN@TENANT"; false when malformed (message in *error).
bool ParseTokenSpec(const std::string& spec, TokenSpec* out, std::string* error);

}  // namespace sluice::server

#endif  // SLUICE_SERVER_SRC_CONFIG_H_
