# Settings come from the environment that benchmarks/bench_tools.py sets (lab key, known_hosts,
# worker timings, the shared EVENTS_LOG).
set :application, "bench"
set :deploy_to, "/var/www/bench"
set :keep_releases, 5
set :linked_dirs, ["log", "tmp/pids"]
set :local_user, "bench"
set :format_options, log_file: nil
set :worker_pidfile, -> { shared_path.join("tmp/pids/worker.0.pid") }
set :worker_health, "http://127.0.0.1:9100/health"
set :worker_start, lambda {
  env = "KAPISTRANO_INSTANCE=0 DRAIN_SECONDS=#{ENV.fetch('BENCH_DRAIN')} " \
        "READY_SECONDS=#{ENV.fetch('BENCH_READY')} EVENTS_LOG=#{ENV.fetch('BENCH_EVENTS')}"
  "cd #{current_path} && { setsid env #{env} python3 worker.py </dev/null " \
    ">>#{shared_path}/log/worker.log 2>&1 & echo $! > #{fetch(:worker_pidfile)}; }"
}
set :ssh_options, {
  user: "root",
  keys: [ENV.fetch("BENCH_KEY")],
  keys_only: true,
  auth_methods: ["publickey"],
  user_known_hosts_file: ENV.fetch("BENCH_KNOWN_HOSTS"),
  global_known_hosts_file: "/dev/null",
  verify_host_key: :always,
  non_interactive: true,
}
