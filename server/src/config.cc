#include "config.h"

#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>
#include <sstream>

namespace sluice::server {
namespace {

// Tokens are opaque printable strings without spaces or '@' (the tenant separator).
bool ValidTokenChars(const std::string& token) {
  for (char c : token) {
    if (c <= ' ' || c == '@' || c == 0x7f) return false;
  }
  return true;
}

bool LoadTokensFile(const std::string& path, std::vector<TokenSpec>* out, std::string* error) {
  std::ifstream in(path);
  if (!in) {
    *error = "cannot read tokens file " + path;
    return false;
  }
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    const auto hash = line.find('#');
    if (hash != std::string::npos) line.resize(hash);
    std::istringstream fields(line);
    std::string token;
    std::string tenant;
    std::string extra;
    if (!(fields >> token)) continue;
    fields >> tenant >> extra;
    if (!extra.empty() || !ValidTokenChars(token) || token.size() < 8) {
      *error = path + ":" + std::to_string(n) +
               ": expected `TOKEN [TENANT]` (token: 8+ printable chars, no '@')";
      return false;
    }
    TokenSpec spec{token, std::nullopt};
    if (!tenant.empty()) spec.tenant = tenant;
    out->push_back(std::move(spec));
  }
  return true;
}

}  // namespace

bool ParseTokenSpec(const std::string& spec, TokenSpec* out, std::string* error) {
  const auto at = spec.find('@');
  out->token = spec.substr(0, at);
  out->tenant.reset();
  if (at != std::string::npos) out->tenant = spec.substr(at + 1);
  if (out->token.size() < 8 || !ValidTokenChars(out->token)) {
    *error = "a token is at least 8 printable characters without spaces or '@'";
    return false;
  }
  return true;
}

std::optional<ServerConfig> ParseConfig(int argc, char** argv, int* exit_code) {
  ServerConfig c;
  CLI::App app{"sluiced: the Sluice job-queue server (gRPC + HTTP health and metrics)", "sluiced"};
  app.set_config("--config", "", "Read options from an INI/TOML file (key = value)");
  app.set_version_flag("--version", std::string("sluiced ") + SLUICE_VERSION);
  app.get_formatter()->column_width(34);

  std::string durability = "sync";
  std::vector<std::string> token_specs;
  std::string tokens_file;
  app.add_option("--data-dir", c.data_dir, "Node data directory (created when missing)")
      ->envname("SLUICE_DATA_DIR")
      ->capture_default_str();
  app.add_option("--grpc-listen", c.grpc_listen, "gRPC listen address HOST:PORT (port 0: any)")
      ->envname("SLUICE_GRPC_LISTEN")
      ->capture_default_str();
  app.add_option("--http-listen", c.http_listen, "HTTP listen address for health and metrics")
      ->envname("SLUICE_HTTP_LISTEN")
      ->capture_default_str();
  app.add_option("--port-file", c.port_file, "Write the bound addresses here as JSON when ready")
      ->envname("SLUICE_PORT_FILE");
  app.add_option("--durability", durability, "sync: fsync before acknowledging; async: no fsync")
      ->check(CLI::IsMember({"sync", "async"}))
      ->envname("SLUICE_DURABILITY")
      ->capture_default_str();
  app.add_option("--token", token_specs,
                 "Accepted bearer token TOKEN (operator) or TOKEN@TENANT (bound); repeatable")
      ->envname("SLUICE_TOKEN")
      ->delimiter(',');
  app.add_option("--tokens-file", tokens_file, "File of `TOKEN [TENANT]` lines")
      ->envname("SLUICE_TOKENS_FILE");
  app.add_flag("--no-auth", c.no_auth, "Accept calls without a token (development only)")
      ->envname("SLUICE_NO_AUTH");
  app.add_option("--tls-cert", c.tls_cert, "PEM certificate chain: serve gRPC over TLS")
      ->envname("SLUICE_TLS_CERT");
  app.add_option("--tls-key", c.tls_key, "PEM private key for --tls-cert")
      ->envname("SLUICE_TLS_KEY");
  app.add_option("--max-message-bytes", c.max_message_bytes, "Largest gRPC request accepted")
      ->envname("SLUICE_MAX_MESSAGE_BYTES")
      ->capture_default_str();
  app.add_option("--max-payload-bytes", c.limits.max_payload_bytes, "Largest job payload")
      ->envname("SLUICE_MAX_PAYLOAD_BYTES")
      ->capture_default_str();
  app.add_option("--max-result-bytes", c.limits.max_result_bytes, "Largest job result")
      ->envname("SLUICE_MAX_RESULT_BYTES")
      ->capture_default_str();
  app.add_option("--max-batch-jobs", c.limits.max_batch_jobs, "Most jobs per EnqueueBatch")
      ->envname("SLUICE_MAX_BATCH_JOBS")
      ->capture_default_str();
  app.add_option("--default-lease-ms", c.default_lease_ms, "Lease of jobs that set none")
      ->envname("SLUICE_DEFAULT_LEASE_MS")
      ->capture_default_str();
  app.add_option("--reaper-interval-ms", c.reaper_interval_ms, "Expired-lease reaper period")
      ->envname("SLUICE_REAPER_INTERVAL_MS")
      ->capture_default_str();
  app.add_option("--max-lease-batch", c.max_lease_batch, "Most tasks per LeaseTasks")
      ->envname("SLUICE_MAX_LEASE_BATCH")
      ->capture_default_str();
  app.add_option("--max-wait-ms", c.max_wait_ms, "Longest long-poll a call may request")
      ->envname("SLUICE_MAX_WAIT_MS")
      ->capture_default_str();
  app.add_option("--drain-timeout-ms", c.drain_timeout_ms, "SIGTERM drain deadline")
      ->envname("SLUICE_DRAIN_TIMEOUT_MS")
      ->capture_default_str();
  app.add_option("--max-threads", c.max_threads, "gRPC handler thread cap")
      ->envname("SLUICE_MAX_THREADS")
      ->capture_default_str();
  app.add_option("--metrics-max-series", c.metrics_max_series,
                 "Queues and keys given their own /metrics series (busiest first)")
      ->envname("SLUICE_METRICS_MAX_SERIES")
      ->capture_default_str();
  app.add_option("--log-format", c.log_format, "json or text")
      ->check(CLI::IsMember({"json", "text"}))
      ->envname("SLUICE_LOG_FORMAT")
      ->capture_default_str();
  app.add_option("--log-level", c.log_level, "debug, info, warn or error")
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}))
      ->envname("SLUICE_LOG_LEVEL")
      ->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    *exit_code = app.exit(e);
    return std::nullopt;
  }
  auto fail = [&](const std::string& msg) {
    std::cerr << "sluiced: " << msg << "\n";
    *exit_code = 2;
    return std::nullopt;
  };
  c.durability = durability == "async" ? Durability::kAsync : Durability::kSync;
  for (const std::string& s : token_specs) {
    TokenSpec spec;
    std::string error;
    if (!ParseTokenSpec(s, &spec, &error)) return fail("--token: " + error);
    c.tokens.push_back(std::move(spec));
  }
  if (!tokens_file.empty()) {
    std::string error;
    if (!LoadTokensFile(tokens_file, &c.tokens, &error)) return fail(error);
  }
  if (c.tls_cert.empty() != c.tls_key.empty()) {
    return fail("--tls-cert and --tls-key go together");
  }
  if (c.max_message_bytes < 1024) return fail("--max-message-bytes must be at least 1024");
  if (c.drain_timeout_ms == 0) return fail("--drain-timeout-ms must be positive");
  *exit_code = 0;
  return c;
}

}  // namespace sluice::server
