# Settings come from the environment that benchmarks/bench_tools.py sets (lab key, known_hosts,
# worker timings, the shared EVENTS_LOG).
set :application, "bench"
set :deploy_to, "/var/www/bench"
set :keep_releases, 5
set :linked_dirs, ["log", "tmp/pids"]
set :local_user, "bench"
set :format_options, log_file: nil
# Instance i of the worker: INDEX in these two templates stands for i (BENCH_INSTANCES of them per host,
# instance i answering /health on BENCH_HEALTH_BASE + i).
set :worker_instances, ENV.fetch("BENCH_INSTANCES", "1").to_i
set :worker_health_base, ENV.fetch("BENCH_HEALTH_BASE", "9100").to_i
set :worker_pidfile_of, -> { shared_path.join("tmp/pids/worker.INDEX.pid").to_s }
set :worker_start_of, lambda {
  env = "KAPISTRANO_INSTANCE=INDEX DRAIN_SECONDS=#{ENV.fetch('BENCH_DRAIN')} " \
        "READY_SECONDS=#{ENV.fetch('BENCH_READY')} EVENTS_LOG=#{ENV.fetch('BENCH_EVENTS')}"
  "cd #{current_path} && { setsid env #{env} python3 worker.py </dev/null " \
    ">>#{shared_path}/log/worker.log 2>&1 & echo $! > #{fetch(:worker_pidfile_of)}; }"
}
set :worker_pidfile, -> { fetch(:worker_pidfile_of).gsub("INDEX", "0") }
set :worker_health, "http://127.0.0.1:9100/health"
set :worker_start, -> { fetch(:worker_start_of).gsub("INDEX", "0") }
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
