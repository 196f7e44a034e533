# Sourced by bench/mirror.sh, bench/rationing.sh and bench/ledger.sh (not run): the pieces they
# share. The caller sets `root` (the project root) before sourcing it.

# say TEXT...: a progress line on stderr.
say() { printf '==> %s\n' "$*" >&2; }

# quick_or_help ARGS...: sets QUICK=1 for --quick (else 0); --help prints the calling script's
# header comment and exits; anything else exits 2.
quick_or_help() {
  QUICK=0
  local arg
  for arg in "$@"; do
    case "$arg" in
      --quick) QUICK=1 ;;
      -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
      *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
  done
}

# free_port: prints a TCP port free on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# image_mirror_binary: sets IM to IMAGE_MIRROR (made absolute) or else to
# target/release/image-mirror, built first unless SKIP_BUILD=1.
image_mirror_binary() {
  if [ -n "${IMAGE_MIRROR:-}" ]; then
    IM=$(realpath "$IMAGE_MIRROR")
  else
    if [ "${SKIP_BUILD:-0}" != 1 ]; then
      say "cargo build --release --locked --bin image-mirror"
      cargo build --release --locked --bin image-mirror >&2
    fi
    IM="$root/target/release/image-mirror"
  fi
}

# work_directory PREFIX: sets W to a new directory PREFIX.XXXXXX under TMPDIR and PID to an
# empty map (name -> process id) of background processes; at exit they are killed and W is
# removed (KEEP=1 keeps it).
work_directory() {
  W=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
  declare -gA PID=()
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
  say "work directory $W"
}

# bench_cleanup: the exit trap of work_directory.
bench_cleanup() {
  local name
  for name in "${!PID[@]}"; do kill "${PID[$name]}" 2>/dev/null || true; done
  for name in "${!PID[@]}"; do wait "${PID[$name]}" 2>/dev/null || true; done
  if [ "${KEEP:-0}" = 1 ]; then say "kept $W"; else rm -rf "$W"; fi
}

# registry_yml PORT STORAGE [accesslog] [cache] [tls CERT KEY]: prints a docker-registry
# configuration serving 127.0.0.1:PORT from the directory STORAGE (log level warn, deletes
# enabled), with the access log on, the in-memory blob descriptor cache, TLS as asked.
registry_yml() {
  local port=$1 storage=$2 accesslog=false cache=false cert="" key=""
  shift 2
  while [ $# -gt 0 ]; do
    case "$1" in
      accesslog) accesslog=true ;;
      cache) cache=true ;;
      tls) cert=$2 key=$3; shift 2 ;;
      *) echo "registry_yml: unknown option $1" >&2; return 2 ;;
    esac
    shift
  done
  printf 'version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: %s\n' \
    "$([ "$accesslog" = true ] && echo false || echo true)"
  printf 'storage:\n  filesystem:\n    rootdirectory: %s\n' "$storage"
  [ "$cache" = false ] || printf '  cache:\n    blobdescriptor: inmemory\n'
  printf '  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:%s\n' "$port"
  [ -z "$cert" ] || printf '  tls:\n    certificate: %s\n    key: %s\n' "$cert" "$key"
}
