# The seed story's restart: TERM, a fixed sleep, start the new worker; one host after the other.
namespace :worker do
  task :restart do
    on roles(:worker), in: :sequence do
      execute "kill -TERM $(cat #{fetch(:worker_pidfile)}); sleep 3; #{fetch(:worker_start)}"
    end
  end
end
