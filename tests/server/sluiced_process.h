// SluicedProcess: runs the real sluiced binary on loopback for a test (ephemeral ports, a
// temporary data directory), and hands out stubs with a token.
#ifndef SLUICE_TESTS_SERVER_SLUICED_PROCESS_H_
#define SLUICE_TESTS_SERVER_SLUICED_PROCESS_H_

#include <grpcpp/grpcpp.h>
#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "sluice/v1/sluice.grpc.pb.h"

namespace sluice::testing {

class SluicedProcess {
 public:
  // Starts sluiced over `data_dir` with `args` appended; waits for its port file.
  SluicedProcess(std::string data_dir, std::vector<std::string> args);
  // SIGTERM and wait (SIGKILL if it does not exit within 30 s).
  ~SluicedProcess();

  // Whether it started (else failure() explains).
  bool ok() const { return pid_ > 0 && !grpc_.empty(); }
  const std::string& failure() const { return failure_; }
  const std::string& grpc_address() const { return grpc_; }
  const std::string& http_address() const { return http_; }
  pid_t pid() const { return pid_; }

  // SIGTERM, then waits; returns the exit status (or -1).
  int Terminate();
  // The process was reaped by the test itself: do not signal or wait for it again.
  void Forget() { pid_ = -1; }

  std::unique_ptr<v1::Sluice::Stub> Stub() const;
  std::shared_ptr<grpc::Channel> Channel() const;

  // A plain HTTP GET on the HTTP port; returns status code and fills *body.
  int HttpGet(const std::string& path, std::string* body) const;

 private:
  std::string data_dir_;
  pid_t pid_ = -1;
  std::string grpc_;
  std::string http_;
  std::string failure_;
};

// A client context carrying `authorization: Bearer <token>` and a deadline.
std::unique_ptr<grpc::ClientContext> Authed(const std::string& token, int deadline_ms = 10'000);

}  // namespace sluice::testing

#endif  // SLUICE_TESTS_SERVER_SLUICED_PROCESS_H_
