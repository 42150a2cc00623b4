// sluiced: the Sluice server. `sluiced --help` lists every option; docs/operations.md explains
// running it. Exit codes: 0 after a clean drain, 1 after a storage failure or a failed start,
// 2 for bad options.
#include <signal.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "config.h"
#include "log.h"
#include "server.h"

namespace {

// Writes the bound addresses as JSON, atomically (tests and scripts wait for this file).
bool WritePortFile(const std::string& path, const std::string& grpc_addr,
                   const std::string& http_addr) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) return false;
    out << "{\"grpc\":\"" << grpc_addr << "\",\"http\":\"" << http_addr
        << "\",\"pid\":" << ::getpid() << "}\n";
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  return !ec;
}

}  // namespace

int main(int argc, char** argv) {
  using sluice::server::Log;
  using sluice::server::LogLevel;
  int exit_code = 0;
  auto config = sluice::server::ParseConfig(argc, argv, &exit_code);
  if (!config) return exit_code;
  LogLevel level = LogLevel::kInfo;
  sluice::server::ParseLogLevel(config->log_level, &level);
  sluice::server::ConfigureLog(level, config->log_format == "json");

  // Signals are taken by one thread with sigwait: block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto server = sluice::server::Server::Start(*config);
  if (!server.ok()) {
    Log(LogLevel::kError, "start failed", {{"error", server.status().message()}});
    return 1;
  }
  auto& s = **server;
  if (!config->port_file.empty() &&
      !WritePortFile(config->port_file, s.grpc_address(), s.http_address())) {
    Log(LogLevel::kError, "cannot write the port file", {{"path", config->port_file}});
    return 1;
  }
  Log(LogLevel::kInfo, "sluiced ready",
      {{"version", SLUICE_VERSION},
       {"grpc", s.grpc_address()},
       {"http", s.http_address()},
       {"data_dir", std::filesystem::absolute(config->data_dir).string()},
       {"durability", config->durability == sluice::Durability::kSync ? "sync" : "async"},
       {"tls", config->tls_cert.empty() ? "off" : "on"}});
  std::printf(
      "sluiced %s ready\n"
      "  gRPC     %s (sluice.v1.Sluice, proto/sluice/v1/sluice.proto)%s\n"
      "  HTTP     http://%s/healthz  /readyz  /metrics\n"
      "  data     %s\n",
      SLUICE_VERSION, s.grpc_address().c_str(), config->tls_cert.empty() ? "" : " over TLS",
      s.http_address().c_str(), std::filesystem::absolute(config->data_dir).string().c_str());
  if (!s.generated_token_file().empty()) {
    std::printf(
        "  token    generated in %s\n"
        "           send `authorization: Bearer $(cat %s)` with every call\n",
        s.generated_token_file().c_str(), s.generated_token_file().c_str());
  } else if (config->no_auth) {
    std::printf("  auth     OFF (--no-auth): every caller is an operator\n");
  } else {
    std::printf("  auth     %zu configured token(s)\n", config->tokens.size());
  }
  std::printf("  stop     Ctrl-C or SIGTERM (drains in-flight calls, up to %u ms)\n",
              config->drain_timeout_ms);
  std::fflush(stdout);

  std::thread signal_thread([&s, signals] {
    int sig = 0;
    sigwait(&signals, &sig);
    Log(LogLevel::kInfo, "signal received", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
    s.Stop();
  });
  const int code = s.Wait();
  s.Drain();
  server->reset();
  // The signal thread may still wait for a signal that will not come: let exit() end it.
  signal_thread.detach();
  Log(LogLevel::kInfo, "sluiced stopped", {{"exit_code", std::to_string(code)}});
  return code;
}
