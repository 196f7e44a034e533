# Sourced by bench/big-layer.sh and deploy/local/quickstart.sh: start Debian's docker-registry
# on a free 127.0.0.1 port over plain HTTP, with storage under $WORK/NAME/. The caller defines
# WORK (a temporary directory) and PIDS (an array its exit trap kills), and runs from the
# project root (bench/regbench.py answers when the registry is up).

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_registry NAME VAR: starts the registry NAME and sets VAR to its HOST:PORT. Not run in
# a subshell, so that PIDS keeps its process id for the trap.
start_registry() {
  local name=$1 var=$2 port
  port=$(free_port)
  mkdir -p "$WORK/$name/data"
  cat >"$WORK/$name/config.yml" <<YAML
version: 0.1
log: { level: error, accesslog: { disabled: true } }
storage: { filesystem: { rootdirectory: $WORK/$name/data }, delete: { enabled: true } }
http: { addr: 127.0.0.1:$port, secret: local-registry }
YAML
  docker-registry serve "$WORK/$name/config.yml" >"$WORK/$name/log" 2>&1 &
  PIDS+=($!)
  if ! python3 bench/regbench.py ping "127.0.0.1:$port" >/dev/null 2>&1; then
    echo "registry $name did not start:" >&2
    cat "$WORK/$name/log" >&2
    exit 1
  fi
  printf -v "$var" "127.0.0.1:%s" "$port"
}
