#include "config.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <cstdlib>
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

// The value of --config (or SLUICE_CONFIG) before anything else is parsed.
std::string FindConfigFlag(int argc, char** argv) {
  std::string file;
  // Options are parsed once at start-up, before any thread exists.
  if (const char* env = std::getenv("SLUICE_CONFIG")) file = env;  // NOLINT(concurrency-mt-unsafe)
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--config" && i + 1 < argc) file = argv[i + 1];
    if (a.rfind("--config=", 0) == 0) file = a.substr(9);
  }
  return file;
}

std::string Trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return {};
  const auto e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

// Whether `name` is a long option of the app (other than --config).
bool KnownOption(CLI::App& app, const std::string& name) {
  if (name == "config" || name == "help" || name == "version") return false;
  try {
    return app.get_option("--" + name) != nullptr;
  } catch (const CLI::OptionNotFound&) {
    return false;
  }
}

// `name = value` lines (quotes optional, # comments, [sections] ignored) -> --name=value.
bool ReadConfigFile(CLI::App& app, const std::string& path, std::vector<std::string>* args,
                    std::string* error) {
  std::ifstream in(path);
  if (!in) {
    *error = "cannot read config file " + path;
    return false;
  }
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    line = Trim(line);
    if (line.empty() || line[0] == '#' || line[0] == ';' || line[0] == '[') continue;
    const auto eq = line.find('=');
    const std::string where = path + ":" + std::to_string(n) + ": ";
    if (eq == std::string::npos) {
      *error = where + "expected `name = value`";
      return false;
    }
    std::string name = Trim(line.substr(0, eq));
    std::string value = Trim(line.substr(eq + 1));
    std::replace(name.begin(), name.end(), '_', '-');
    if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'') &&
        value.back() == value.front()) {
      value = value.substr(1, value.size() - 2);
    }
    if (!KnownOption(app, name)) {
      *error = where;
      error->append("unknown option `").append(name).append("`");
      return false;
    }
    std::string arg = "--";
    arg.append(name).append("=").append(value);
    args->push_back(std::move(arg));
  }
  return true;
}

// SLUICE_<NAME> for every long option -> --name=value.
void ReadEnvironment(CLI::App& app, std::vector<std::string>* args) {
  for (const CLI::Option* opt : app.get_options()) {
    const std::string name = opt->get_single_name();
    if (name.empty() || !KnownOption(app, name)) continue;
    std::string env = "SLUICE_" + name;
    for (char& ch : env) {
      ch = ch == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    }
    // Single-threaded start-up (see FindConfigFlag).
    if (const char* v = std::getenv(env.c_str())) {  // NOLINT(concurrency-mt-unsafe)
      std::string arg = "--";
      arg.append(name).append("=").append(v);
      args->push_back(std::move(arg));
    }
  }
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
  CLI::App app{
      "sluiced: the Sluice job-queue server (gRPC + HTTP health and metrics)\n"
      "Every option is also read from SLUICE_<NAME> (e.g. SLUICE_DURABILITY) and from\n"
      "the --config file (`name = value`); flags beat environment beats file.",
      "sluiced"};
  // The last value wins: the merged argument list is file, then environment, then flags.
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  std::string config_file;
  app.add_option("--config", config_file, "Read options from this file (`name = value` lines)");
  app.set_version_flag("--version", std::string("sluiced ") + SLUICE_VERSION);
  app.get_formatter()->column_width(34);

  std::string durability = "sync";
  std::vector<std::string> token_specs;
  std::string tokens_file;
  app.add_option("--data-dir", c.data_dir, "Node data directory (created when missing)")
      ->capture_default_str();
  app.add_option("--grpc-listen", c.grpc_listen, "gRPC listen address HOST:PORT (port 0: any)")
      ->capture_default_str();
  app.add_option("--http-listen", c.http_listen, "HTTP listen address for health and metrics")
      ->capture_default_str();
  app.add_option("--port-file", c.port_file, "Write the bound addresses here as JSON when ready");
  app.add_option("--durability", durability, "sync: fsync before acknowledging; async: no fsync")
      ->check(CLI::IsMember({"sync", "async"}))
      ->capture_default_str();
  app.add_option("--token", token_specs,
                 "Accepted bearer token TOKEN (operator) or TOKEN@TENANT (bound); repeatable")
      ->delimiter(',');
  app.add_option("--tokens-file", tokens_file, "File of `TOKEN [TENANT]` lines");
  app.add_flag("--no-auth", c.no_auth, "Accept calls without a token (development only)");
  app.add_option("--tls-cert", c.tls_cert, "PEM certificate chain: serve gRPC over TLS");
  app.add_option("--tls-key", c.tls_key, "PEM private key for --tls-cert");
  app.add_option("--max-message-bytes", c.max_message_bytes, "Largest gRPC request accepted")
      ->capture_default_str();
  app.add_option("--max-payload-bytes", c.limits.max_payload_bytes, "Largest job payload")
      ->capture_default_str();
  app.add_option("--max-result-bytes", c.limits.max_result_bytes, "Largest job result")
      ->capture_default_str();
  app.add_option("--max-batch-jobs", c.limits.max_batch_jobs, "Most jobs per EnqueueBatch")
      ->capture_default_str();
  app.add_option("--default-lease-ms", c.default_lease_ms, "Lease of jobs that set none")
      ->capture_default_str();
  app.add_option("--refresh-lease-ms", c.refresh_lease_ms, "Lease of floating-limit refresh tasks")
      ->capture_default_str();
  app.add_option("--reaper-interval-ms", c.reaper_interval_ms, "Expired-lease reaper period")
      ->capture_default_str();
  app.add_option("--max-lease-batch", c.max_lease_batch, "Most tasks per LeaseTasks")
      ->capture_default_str();
  app.add_option("--max-wait-ms", c.max_wait_ms, "Longest long-poll a call may request")
      ->capture_default_str();
  app.add_option("--drain-timeout-ms", c.drain_timeout_ms, "SIGTERM drain deadline")
      ->capture_default_str();
  app.add_option("--max-threads", c.max_threads,
                 "Cap of the gRPC handler threads and of each blocking pool (fsync waits, "
                 "long-poll waits)")
      ->capture_default_str();
  app.add_option("--metrics-max-series", c.metrics_max_series,
                 "Queues and keys given their own /metrics series (busiest first)")
      ->capture_default_str();
  app.add_option("--query-timeout-ms", c.query_timeout_ms,
                 "Longest a Query may run; requests may ask for less")
      ->capture_default_str();
  app.add_option("--query-max-rows", c.query_max_rows, "Most rows one Query may return")
      ->capture_default_str();
  app.add_option("--query-max-result-bytes", c.query_max_result_bytes,
                 "Largest result one Query may return")
      ->capture_default_str();
  app.add_option("--max-list-page", c.limits.max_list_page, "Most jobs per ListJobs page")
      ->capture_default_str();
  app.add_option("--log-format", c.log_format, "json or text")
      ->check(CLI::IsMember({"json", "text"}))
      ->capture_default_str();
  app.add_option("--log-level", c.log_level, "debug, info, warn or error")
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}))
      ->capture_default_str();

  auto fail = [&](const std::string& msg) {
    std::cerr << "sluiced: " << msg << "\n";
    *exit_code = 2;
    return std::nullopt;
  };
  // Merge the sources into one argument list, lowest precedence first.
  std::vector<std::string> args;
  std::string error;
  const std::string file = FindConfigFlag(argc, argv);
  if (!file.empty() && !ReadConfigFile(app, file, &args, &error)) return fail(error);
  ReadEnvironment(app, &args);
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
  std::reverse(args.begin(), args.end());  // CLI11 parses a vector from its back
  try {
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    *exit_code = code == 0 ? 0 : 2;  // --help / --version: 0; any bad option: 2
    return std::nullopt;
  }
  c.durability = durability == "async" ? Durability::kAsync : Durability::kSync;
  for (const std::string& s : token_specs) {
    TokenSpec spec;
    if (!ParseTokenSpec(s, &spec, &error)) return fail("--token: " + error);
    c.tokens.push_back(std::move(spec));
  }
  if (!tokens_file.empty()) {
    if (!LoadTokensFile(tokens_file, &c.tokens, &error)) return fail(error);
  }
  if (c.tls_cert.empty() != c.tls_key.empty()) {
    return fail("--tls-cert and --tls-key go together");
  }
  if (c.max_message_bytes < 1024) return fail("--max-message-bytes must be at least 1024");
  if (c.drain_timeout_ms == 0) return fail("--drain-timeout-ms must be positive");
  if (c.query_timeout_ms == 0) return fail("--query-timeout-ms must be positive");
  if (c.query_max_rows == 0) return fail("--query-max-rows must be positive");
  if (c.query_max_result_bytes == 0) return fail("--query-max-result-bytes must be positive");
  if (c.limits.max_list_page == 0) return fail("--max-list-page must be positive");
  *exit_code = 0;
  return c;
}

}  // namespace sluice::server
