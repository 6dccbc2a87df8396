# unicorn for the lab hosts: reached from the root namespace at the host's address.
deploy_to = ENV.fetch("DEPLOY_TO", "/var/www/web")
worker_processes 2
listen "0.0.0.0:#{ENV.fetch("PORT", "8080")}", backlog: 1024
pid "#{deploy_to}/shared/tmp/pids/unicorn.pid"
working_directory "#{deploy_to}/current"
stderr_path "#{deploy_to}/shared/log/unicorn.stderr.log"
timeout 30
