require "capistrano/scm/plugin"

# A minimal SCM plugin: the new release is a copy of :source_path, a directory on each host.
class PathCopy < Capistrano::SCM::Plugin
  def set_defaults
    set_if_empty :source_path, -> { ENV.fetch("BENCH_SOURCE") }
    set_if_empty :revision_label, -> { ENV.fetch("BENCH_VERSION") }
  end

  def register_hooks
    after "deploy:new_release_path", "path_copy:create_release"
    before "deploy:check", "path_copy:check"
    before "deploy:set_current_revision", "path_copy:set_current_revision"
  end

  def define_tasks
    namespace :path_copy do
      task :check do
        on release_roles(:all) do
          execute :test, "-d", fetch(:source_path)
        end
      end

      task :create_release do
        on release_roles(:all) do
          execute :mkdir, "-p", release_path
          execute :cp, "-a", "#{fetch(:source_path)}/.", release_path
        end
      end

      task :set_current_revision do
        set :current_revision, fetch(:revision_label)
      end
    end
  end
end
