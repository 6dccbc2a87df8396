# TERM every instance, poll until all the old pids are gone, start every instance, poll each one's
# /health until 200; one host after the other, no pause between hosts. Every loop is bounded (120 s).
namespace :worker do
  task :restart do
    on roles(:worker), in: :sequence, wait: 0 do
      indexes = (0...fetch(:worker_instances)).map(&:to_s)
      pids = indexes.map { |i| "$(cat #{fetch(:worker_pidfile_of).gsub('INDEX', i)})" }.join(" ")
      health = indexes.map do |i|
        url = "http://127.0.0.1:#{fetch(:worker_health_base) + i.to_i}/health"
        "i=0; until curl -fsS -o /dev/null #{url}; do [ $i -lt 1200 ] || exit 1; sleep 0.1; i=$((i+1)); done"
      end
      execute [
        "pids=\"#{pids}\"",
        "kill -TERM $pids",
        "i=0; while :; do up=; for p in $pids; do kill -0 $p 2>/dev/null && up=1; done; [ -z \"$up\" ] && break; " \
          "[ $i -lt 1200 ] || exit 1; sleep 0.1; i=$((i+1)); done",
        *indexes.map { |i| fetch(:worker_start_of).gsub("INDEX", i) },
        *health,
      ].join("; ")
    end
  end
end
