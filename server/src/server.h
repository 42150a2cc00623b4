// Server: one sluiced node — the engine, the gRPC service and the HTTP endpoints — with an
// orderly drain. main.cc runs one; the in-process tests can too.
#ifndef SLUICE_SERVER_SRC_SERVER_H_
#define SLUICE_SERVER_SRC_SERVER_H_

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "config.h"
#include "sluice/status.h"

namespace sluice::server {

class Server {
 public:
  // Opens the engine under config.data_dir/shard-0, starts gRPC and HTTP. Fails with a clear
  // status when the store cannot be opened or a port cannot be bound.
  static Result<std::unique_ptr<Server>> Start(const ServerConfig& config);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  const std::string& grpc_address() const;  // "host:port" actually bound
  const std::string& http_address() const;
  // The admin token generated on first start when no token was configured ("" otherwise).
  const std::string& generated_token_file() const;

  // Blocks until Stop() or a storage failure; returns the process exit code (0, or 1 after a
  // storage error).
  int Wait();
  // Asks Wait() to return (signal handlers, tests). Thread-safe, idempotent.
  void Stop();

  // Drains: /readyz turns 503, no new RPCs are accepted, long-polls end, in-flight RPCs get
  // drain_timeout_ms to finish (then they are cancelled), the engine closes, HTTP stops.
  void Drain();

  class Impl;

 private:
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::server

#endif  // SLUICE_SERVER_SRC_SERVER_H_
