# Rendered by mlserve from mlserve.toml. Do not edit: change the manifest (or templates/) and run `mlserve render`.

# No remote state backend is configured for this environment: state stays in this
# folder. Set [environments.edge.backend] in mlserve.toml to share it.
