#include "server.h"

#include <google/protobuf/descriptor.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/resource_quota.h>
#include <httplib.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "auth.h"
#include "log.h"
#include "metrics.h"
#include "service.h"
#include "sluice/engine.h"

namespace sluice::server {
namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string RandomHex(size_t bytes) {
  std::random_device rd;  // /dev/urandom on Linux
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < bytes; ++i) {
    const auto b = static_cast<unsigned>(rd() & 0xff);
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 0xf]);
  }
  return out;
}

// Reads a one-line file, or creates it (mode 0600) with `make()`'s value.
Result<std::string> ReadOrCreate(const std::filesystem::path& path,
                                 const std::function<std::string()>& make) {
  std::ifstream in(path);
  std::string value;
  if (in && std::getline(in, value) && !value.empty()) return value;
  value = make();
  const std::filesystem::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) return Status::IoError("cannot write " + tmp.string());
    out << value << "\n";
  }
  ::chmod(tmp.c_str(), 0600);
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return Status::IoError("cannot write " + path.string() + ": " + ec.message());
  return value;
}

// Splits "host:port" / "[v6]:port"; false when malformed.
bool SplitHostPort(const std::string& addr, std::string* host, int* port) {
  const auto colon = addr.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  *host = addr.substr(0, colon);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']') {
    *host = host->substr(1, host->size() - 2);
  }
  try {
    size_t used = 0;
    const std::string p = addr.substr(colon + 1);
    *port = std::stoi(p, &used);
    return used == p.size() && *port >= 0 && *port <= 65535;
  } catch (...) {
    return false;
  }
}

std::string JoinHostPort(const std::string& host, int port) {
  return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
         std::to_string(port);
}

std::vector<std::string> ServiceMethods() {
  std::vector<std::string> out;
  const auto* svc = google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
      v1::Sluice::service_full_name());
  for (int i = 0; svc != nullptr && i < svc->method_count(); ++i) {
    out.push_back("/" + svc->full_name() + "/" + svc->method(i)->name());
  }
  return out;
}

}  // namespace

class Server::Impl {
 public:
  explicit Impl(const ServerConfig& config) : config_(config) {}

  Status Start();
  void Drain();
  int Wait();
  void Stop(int exit_code);

  ServerConfig config_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<TokenTable> tokens_;
  CallPrincipals principals_;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<SluiceService> service_;
  std::unique_ptr<grpc::Server> grpc_;
  httplib::Server http_;
  std::thread http_thread_;
  std::string grpc_address_;
  std::string http_address_;
  std::string generated_token_file_;
  std::atomic<bool> ready_{false};
  std::atomic<int64_t> in_flight_{0};  // gRPC calls in progress

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  int exit_code_ = 0;
  std::once_flag drain_once_;
};

Status Server::Impl::Start() {
  const std::filesystem::path dir(config_.data_dir);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec)
    return Status::IoError("cannot create data directory " + dir.string() + ": " + ec.message());

  // Tokens: configured ones, or a generated operator token kept in the data directory.
  std::vector<TokenSpec> tokens = config_.tokens;
  if (tokens.empty() && !config_.no_auth) {
    const std::filesystem::path file = dir / "admin.token";
    auto token = ReadOrCreate(file, [] { return RandomHex(24); });
    if (!token.ok()) return token.status();
    tokens.push_back({*token, std::nullopt});
    generated_token_file_ = std::filesystem::absolute(file).string();
  }
  if (config_.no_auth) {
    Log(LogLevel::kWarn, "authentication is disabled (--no-auth): any caller acts as operator");
  }
  tokens_ = std::make_unique<TokenTable>(std::move(tokens), config_.no_auth);
  auto node_id = ReadOrCreate(dir / "node_id", [] { return RandomHex(16); });
  if (!node_id.ok()) return node_id.status();

  EngineOptions eo;
  eo.path = (dir / "shard-0").string();
  eo.durability = config_.durability;
  eo.limits = config_.limits;
  eo.default_lease_ms = config_.default_lease_ms;
  eo.refresh_lease_ms = config_.refresh_lease_ms;
  eo.reaper_interval_ms = config_.reaper_interval_ms;
  eo.max_lease_batch = config_.max_lease_batch;
  eo.max_wait_ms = config_.max_wait_ms;
  auto engine = Engine::Open(eo);
  if (!engine.ok()) return engine.status();
  engine_ = std::move(*engine);

  NodeFacts facts;
  facts.version = SLUICE_VERSION;
  facts.node_id = *node_id;
  facts.durability = config_.durability == Durability::kSync ? "sync" : "async";
  facts.started_ms = NowMs();
  facts.max_message_bytes = config_.max_message_bytes;
  facts.limits = config_.limits;
  facts.max_lease_batch = config_.max_lease_batch;
  facts.max_wait_ms = config_.max_wait_ms;
  facts.default_lease_ms = config_.default_lease_ms;
  facts.query_timeout_ms = config_.query_timeout_ms;
  facts.query_max_rows = config_.query_max_rows;
  facts.query_max_result_bytes = config_.query_max_result_bytes;
  metrics_ = std::make_unique<Metrics>(ServiceMethods(), config_.metrics_max_series);
  service_ = std::make_unique<SluiceService>(
      engine_.get(), &principals_, facts, [this](const Status&) { Stop(1); }, metrics_.get(),
      config_.max_threads);

  // gRPC.
  std::shared_ptr<grpc::ServerCredentials> creds;
  if (!config_.tls_cert.empty()) {
    auto read = [](const std::string& path, std::string* out) {
      std::ifstream in(path);
      if (!in) return false;
      std::stringstream ss;
      ss << in.rdbuf();
      *out = ss.str();
      return true;
    };
    grpc::SslServerCredentialsOptions ssl;
    grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
    if (!read(config_.tls_key, &pair.private_key) || !read(config_.tls_cert, &pair.cert_chain)) {
      return Status::InvalidArgument("cannot read --tls-cert / --tls-key");
    }
    ssl.pem_key_cert_pairs.push_back(std::move(pair));
    creds = grpc::SslServerCredentials(ssl);
  } else {
    creds = grpc::InsecureServerCredentials();
  }
  grpc::ServerBuilder builder;
  int grpc_port = 0;
  builder.AddListeningPort(config_.grpc_listen, creds, &grpc_port);
  builder.RegisterService(service_.get());
  builder.SetMaxReceiveMessageSize(static_cast<int>(config_.max_message_bytes));
  builder.SetMaxSendMessageSize(-1);
  grpc::ResourceQuota quota("sluiced");
  quota.SetMaxThreads(static_cast<int>(config_.max_threads));
  builder.SetResourceQuota(quota);
  // Keep idle handler threads instead of letting all but two exit (gRPC's default): with
  // long-polls and fsync waits, the default created and destroyed a thread per few calls.
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS,
                              static_cast<int>(config_.max_threads));
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<AuthInterceptorFactory>(
      tokens_.get(), &principals_,
      [this](std::string_view method, grpc::StatusCode code, double secs) {
        metrics_->ObserveRpc(method, code, secs);
      },
      &in_flight_));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  grpc_ = builder.BuildAndStart();
  if (!grpc_ || grpc_port == 0) {
    return Status::InvalidArgument("cannot listen for gRPC on " + config_.grpc_listen);
  }
  std::string host;
  int port = 0;
  SplitHostPort(config_.grpc_listen, &host, &port);
  grpc_address_ = JoinHostPort(host, grpc_port);

  // HTTP.
  if (!SplitHostPort(config_.http_listen, &host, &port)) {
    return Status::InvalidArgument("--http-listen: expected HOST:PORT, got " + config_.http_listen);
  }
  http_.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  http_.Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
    if (ready_.load()) {
      res.set_content("ready\n", "text/plain");
    } else {
      res.status = 503;
      res.set_content("draining\n", "text/plain");
    }
  });
  http_.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_->Render(*engine_), "text/plain; version=0.0.4; charset=utf-8");
  });
  const int http_port =
      port == 0 ? http_.bind_to_any_port(host) : (http_.bind_to_port(host, port) ? port : -1);
  if (http_port <= 0) {
    return Status::InvalidArgument("cannot listen for HTTP on " + config_.http_listen);
  }
  http_address_ = JoinHostPort(host, http_port);
  http_thread_ = std::thread([this] { http_.listen_after_bind(); });
  ready_.store(true);
  return Status::Ok();
}

void Server::Impl::Drain() {
  std::call_once(drain_once_, [this] {
    const auto t0 = std::chrono::steady_clock::now();
    ready_.store(false);
    Log(LogLevel::kInfo, "draining", {{"deadline_ms", std::to_string(config_.drain_timeout_ms)}});
    if (service_) service_->StartDraining();
    if (grpc_) {
      // Shutdown stops accepting at once and waits for calls in flight up to the deadline.
      // It would also wait (to the deadline) for idle clients to acknowledge GOAWAY; once no
      // call is in flight, force the connections closed instead.
      std::thread shutdown([this] {
        grpc_->Shutdown(std::chrono::system_clock::now() +
                        std::chrono::milliseconds(config_.drain_timeout_ms));
      });
      const auto deadline =
          std::chrono::steady_clock::now() + std::chrono::milliseconds(config_.drain_timeout_ms);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // Shutdown is under way
      while (in_flight_.load() > 0 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      grpc_server_cancel_all_calls(grpc_->c_server());
      shutdown.join();
      grpc_->Wait();
      Log(LogLevel::kDebug, "grpc stopped", {{"in_flight", std::to_string(in_flight_.load())}});
    }
    if (engine_) {
      const Status s = engine_->Close();
      if (!s.ok()) Log(LogLevel::kError, "engine close failed", {{"error", s.message()}});
      Log(LogLevel::kDebug, "engine closed");
    }
    if (http_thread_.joinable()) {
      http_.stop();
      http_thread_.join();
    }
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
            .count();
    Log(LogLevel::kInfo, "drained", {{"elapsed_ms", std::to_string(ms)}});
  });
}

int Server::Impl::Wait() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return stop_; });
  return exit_code_;
}

void Server::Impl::Stop(int exit_code) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (exit_code != 0) exit_code_ = exit_code;
    stop_ = true;
  }
  cv_.notify_all();
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() {
  if (impl_) impl_->Drain();
}

Result<std::unique_ptr<Server>> Server::Start(const ServerConfig& config) {
  auto impl = std::make_unique<Impl>(config);
  Status s = impl->Start();
  if (!s.ok()) {
    impl->Drain();
    return s;
  }
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

const std::string& Server::grpc_address() const { return impl_->grpc_address_; }
const std::string& Server::http_address() const { return impl_->http_address_; }
const std::string& Server::generated_token_file() const { return impl_->generated_token_file_; }
int Server::Wait() { return impl_->Wait(); }
void Server::Stop() { impl_->Stop(0); }
void Server::Drain() { impl_->Drain(); }

}  // namespace sluice::server
