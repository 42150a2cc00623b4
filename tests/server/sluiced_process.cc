#include "sluiced_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

namespace sluice::testing {
namespace {

// Pulls "key":"value" out of the port file's one-line JSON.
std::string JsonField(const std::string& json, const std::string& key) {
  const std::string k = "\"" + key + "\":\"";
  const auto at = json.find(k);
  if (at == std::string::npos) return {};
  const auto start = at + k.size();
  return json.substr(start, json.find('"', start) - start);
}

}  // namespace

SluicedProcess::SluicedProcess(std::string data_dir, std::vector<std::string> args)
    : data_dir_(std::move(data_dir)) {
  const std::string port_file = data_dir_ + ".ports.json";
  ::unlink(port_file.c_str());
  std::vector<std::string> argv = {SLUICED_PATH,  "--data-dir",    data_dir_,     "--grpc-listen",
                                   "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--port-file",
                                   port_file,     "--log-level",   "warn"};
  argv.insert(argv.end(), args.begin(), args.end());
  pid_ = ::fork();
  if (pid_ == 0) {
    // The banner goes to stdout: keep the test output to sluiced's warnings (stderr).
    const int devnull = ::open("/dev/null", O_WRONLY);
    if (devnull >= 0) ::dup2(devnull, STDOUT_FILENO);
    std::vector<char*> cargv;
    for (std::string& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    ::execv(cargv[0], cargv.data());
    ::_exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      failure_ = "sluiced exited during start with status " + std::to_string(status);
      pid_ = -1;
      return;
    }
    std::ifstream in(port_file);
    std::string json;
    if (in && std::getline(in, json) && !json.empty()) {
      grpc_ = JsonField(json, "grpc");
      http_ = JsonField(json, "http");
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  failure_ = "sluiced wrote no port file within 30 s";
}

SluicedProcess::~SluicedProcess() {
  if (pid_ > 0) Terminate();
}

int SluicedProcess::Terminate() {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  int status = 0;
  while (::waitpid(pid_, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      pid_ = -1;
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::shared_ptr<grpc::Channel> SluicedProcess::Channel() const {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  return grpc::CreateCustomChannel(grpc_, grpc::InsecureChannelCredentials(), args);
}

std::unique_ptr<v1::Sluice::Stub> SluicedProcess::Stub() const {
  return v1::Sluice::NewStub(Channel());
}

int SluicedProcess::HttpGet(const std::string& path, std::string* body) const {
  const auto colon = http_.rfind(':');
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::stoi(http_.substr(colon + 1))));
  ::inet_pton(AF_INET, http_.substr(0, colon).c_str(), &addr.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  const std::string req = "GET " + path + " HTTP/1.0\r\nHost: x\r\nConnection: close\r\n\r\n";
  if (::write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) {
    ::close(fd);
    return -1;
  }
  std::string resp;
  char buf[4096];
  ssize_t n = 0;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) resp.append(buf, static_cast<size_t>(n));
  ::close(fd);
  // "HTTP/1.1 200 OK\r\n...\r\n\r\nbody"
  const auto sp = resp.find(' ');
  const auto sep = resp.find("\r\n\r\n");
  if (sp == std::string::npos || sep == std::string::npos) return -1;
  *body = resp.substr(sep + 4);
  return std::stoi(resp.substr(sp + 1, 3));
}

std::unique_ptr<grpc::ClientContext> Authed(const std::string& token, int deadline_ms) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->AddMetadata("authorization", "Bearer " + token);
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(deadline_ms));
  return ctx;
}

}  // namespace sluice::testing
