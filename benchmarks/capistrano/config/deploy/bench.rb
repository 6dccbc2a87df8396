# The lab hosts: BENCH_HOSTS is a comma-separated list of addresses.
ENV.fetch("BENCH_HOSTS").split(",").each do |address|
  server address, user: "root", roles: %w[worker]
end
