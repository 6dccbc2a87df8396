# A tiny Rack app answering with the release's version, its worker and master pid.
version = File.read(File.join(__dir__, "VERSION")).strip
run lambda { |_env|
  body = "ok #{version} #{Process.pid} #{Process.ppid}\n"
  [200, {"content-type" => "text/plain", "content-length" => body.bytesize.to_s}, [body]]
}
