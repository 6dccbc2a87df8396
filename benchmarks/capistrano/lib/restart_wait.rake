# TERM, poll until the old pid is gone, start, poll /health until 200; one host after the other,
# no pause between hosts. Both loops are bounded (120 s).
namespace :worker do
  task :restart do
    on roles(:worker), in: :sequence, wait: 0 do
      execute [
        "pid=$(cat #{fetch(:worker_pidfile)})",
        "kill -TERM $pid",
        "i=0; while kill -0 $pid 2>/dev/null; do [ $i -lt 1200 ] || exit 1; sleep 0.1; i=$((i+1)); done",
        fetch(:worker_start),
        "i=0; until curl -fsS -o /dev/null #{fetch(:worker_health)}; do [ $i -lt 1200 ] || exit 1; sleep 0.1; i=$((i+1)); done",
      ].join("; ")
    end
  end
end
