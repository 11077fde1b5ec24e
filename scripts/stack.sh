#!/usr/bin/env bash
# Local Kafka (single-node KRaft, broker+controller) and Redis for tests and
# development, without Docker.  Everything listens on 127.0.0.1 only, on free
# ports picked at start-up, with state under .stack/ in the repository root.
# Redis keeps an append-only file (fsync every second) and Kafka its log dirs,
# so both keep their data across restarts.
#
#   scripts/stack.sh up       start (idempotent); prints the env on stdout.  On a
#                             stack of ours found unhealthy, it restarts what is
#                             down on the same ports and data, deleting nothing.
#   scripts/stack.sh down     stop and remove the data (idempotent; the only
#                             command that deletes data)
#   scripts/stack.sh status   report health; exit 0 only if both are healthy
#   scripts/stack.sh env      print the env file: eval "$(scripts/stack.sh env)"
#
# The env file (.stack/env) exports SENDGUARD_KAFKA_BOOTSTRAP_SERVERS and
# SENDGUARD_REDIS_URL.  A stack started by this version also has a SASL/SCRAM
# listener (SCRAM-SHA-256, no TLS, loopback) for the tests of authenticated
# clients; the env file then exports SENDGUARD_STACK_SCRAM_BOOTSTRAP,
# SENDGUARD_STACK_SCRAM_USERNAME and SENDGUARD_STACK_SCRAM_PASSWORD (a fixed
# development credential, created when the KRaft storage is formatted).  A
# stack started before keeps its configuration until it is next started fresh.
#
# Use an existing stack instead: export SENDGUARD_EXTERNAL_STACK=1 plus both
# variables above; `up` then only waits for them to answer and writes the env
# file, and `down` stops nothing.
#
# Knobs (environment):
#   SENDGUARD_STACK_DIR        state folder (default: <repo>/.stack)
#   SENDGUARD_STACK_TIMEOUT    readiness deadline in seconds (default: 120)
#   SENDGUARD_KAFKA_HEAP_OPTS  JVM heap flags (default: -Xms256m -Xmx1g)
#   SENDGUARD_KAFKA_JVM_OPTS   other JVM flags (default: -XX:TieredStopAtLevel=1
#                              -XX:+UseG1GC -XX:MaxGCPauseMillis=20)
#   SENDGUARD_KAFKA_LOG_LEVEL  broker root log level (default: INFO)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK_DIR="${SENDGUARD_STACK_DIR:-$ROOT/.stack}"
POM="$ROOT/scripts/stack/pom.xml"
LIBS="$STACK_DIR/kafka-libs"
DATA="$STACK_DIR/data"
ENV_FILE="$STACK_DIR/env"
STATE_FILE="$STACK_DIR/state"
KAFKA_PID="$STACK_DIR/kafka.pid"
REDIS_PID="$STACK_DIR/redis.pid"
KAFKA_LOG="$STACK_DIR/kafka.log"
REDIS_LOG="$STACK_DIR/redis.log"
TIMEOUT="${SENDGUARD_STACK_TIMEOUT:-120}"
HOST=127.0.0.1
SCRAM_USER=sendguard
SCRAM_SECRET=sendguard-scram-dev-password

log() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

PYTHON="$(command -v python3 || true)"
[[ -n "$PYTHON" ]] || die "python3 is required"

# --------------------------------------------------------------------------
# Standard-library-only helpers (no venv needed): free ports, Kafka and Redis
# readiness probes speaking the wire protocols directly.
# --------------------------------------------------------------------------
read -r -d '' PYHELPER <<'PY' || true
import os, socket, ssl, struct, sys, time
from urllib.parse import unquote, urlparse


def free_ports(n):
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        print(" ".join(str(s.getsockname()[1]) for s in socks))
    finally:
        for s in socks:
            s.close()


def _recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return buf


def _kafka_call(sock, api_key, version, corr, body):
    client = b"sendguard-stack"
    header = struct.pack(">hhih", api_key, version, corr, len(client)) + client
    msg = header + body
    sock.sendall(struct.pack(">i", len(msg)) + msg)
    (size,) = struct.unpack(">i", _recv_exact(sock, 4))
    resp = _recv_exact(sock, size)
    (got,) = struct.unpack(">i", resp[:4])
    if got != corr:
        raise ConnectionError("correlation id mismatch")
    return resp[4:]


def kafka_ready(bootstrap, timeout):
    """One probe: ApiVersions, then Metadata must list a live broker and a controller."""
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as sock:
        sock.settimeout(timeout)
        body = _kafka_call(sock, 18, 0, 1, b"")  # ApiVersions v0
        (err, count) = struct.unpack(">hi", body[:6])
        if err != 0:
            raise ConnectionError(f"ApiVersions error {err}")
        ranges = {}
        for i in range(count):
            key, lo, hi = struct.unpack(">hhh", body[6 + 6 * i: 12 + 6 * i])
            ranges[key] = (lo, hi)
        lo, hi = ranges.get(3, (0, -1))
        version = max(lo, 4)
        if version > min(hi, 8):
            return "api-versions-only"  # no non-flexible Metadata version to speak
        req = struct.pack(">ib", 0, 0)  # no topics, no auto-creation
        if version >= 8:
            req += struct.pack(">bb", 0, 0)
        body = _kafka_call(sock, 3, version, 2, req)
        off = 4  # throttle_time_ms
        (nbrokers,) = struct.unpack(">i", body[off:off + 4]); off += 4
        for _ in range(nbrokers):
            off += 4  # node_id
            (hl,) = struct.unpack(">h", body[off:off + 2]); off += 2 + hl
            off += 4  # port
            (rl,) = struct.unpack(">h", body[off:off + 2]); off += 2 + max(rl, 0)
        (cl,) = struct.unpack(">h", body[off:off + 2]); off += 2 + max(cl, 0)
        (controller,) = struct.unpack(">i", body[off:off + 4])
        if nbrokers < 1 or controller < 0:
            raise ConnectionError(f"not ready: brokers={nbrokers} controller={controller}")
        return "ok"


def redis_ready(url, timeout):
    u = urlparse(url)
    port = u.port or 6379
    sock = socket.create_connection((u.hostname or "127.0.0.1", port), timeout=timeout)
    if u.scheme == "rediss":
        sock = ssl.create_default_context().wrap_socket(sock, server_hostname=u.hostname)
    with sock:
        sock.settimeout(timeout)

        def cmd(*args):
            out = b"*%d\r\n" % len(args)
            for a in args:
                a = a.encode()
                out += b"$%d\r\n%s\r\n" % (len(a), a)
            sock.sendall(out)
            line = b""
            while not line.endswith(b"\r\n"):
                chunk = sock.recv(1)
                if not chunk:
                    raise ConnectionError("connection closed")
                line += chunk
            return line.strip()

        if u.password:
            user = unquote(u.username) if u.username else None
            reply = cmd("AUTH", *( [user] if user else [] ), unquote(u.password))
            if not reply.startswith(b"+OK"):
                raise ConnectionError(f"AUTH failed: {reply!r}")
        reply = cmd("PING")
        if reply != b"+PONG":
            raise ConnectionError(f"PING answered {reply!r}")
        return "ok"


def wait(kind, target, deadline_s, pid):
    """Probe until ready; fail early if the watched process dies."""
    probe = kafka_ready if kind == "kafka" else redis_ready
    deadline = time.monotonic() + float(deadline_s)
    last = None
    while True:
        if pid:
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                print(f"{kind}: process {pid} exited", file=sys.stderr)
                return 3
        try:
            probe(target, 3.0)
            return 0
        except Exception as exc:  # noqa: BLE001 - report the last reason
            last = exc
        if time.monotonic() >= deadline:
            print(f"{kind}: not ready after {deadline_s}s: {last!r}", file=sys.stderr)
            return 2
        time.sleep(0.5)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "ports":
        free_ports(int(sys.argv[2]))
    elif cmd == "wait":
        sys.exit(wait(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] if len(sys.argv) > 5 else ""))
    elif cmd == "uuid":
        import base64, uuid
        print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))
    else:
        sys.exit(f"unknown helper command {cmd}")
PY

py() { "$PYTHON" -c "$PYHELPER" "$@"; }

# --------------------------------------------------------------------------
# Prerequisites
# --------------------------------------------------------------------------
APT_UPDATED=0
apt_install() {
  command -v apt-get >/dev/null || die "cannot install $* (no apt-get); install it by hand"
  local sudo=""
  [[ "$(id -u)" -eq 0 ]] || sudo="sudo"
  if [[ "$APT_UPDATED" -eq 0 ]]; then
    log "apt-get update"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    APT_UPDATED=1
  fi
  log "apt-get install $*"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

ensure_tools() {
  command -v redis-server >/dev/null || apt_install redis-server
  command -v java >/dev/null || apt_install default-jre-headless
  local major
  major="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
  [[ "${major%%.*}" -ge 17 ]] 2>/dev/null || die "Kafka 4 needs Java >= 17 (found '${major:-?}')"
}

pom_stamp() { sha256sum "$POM" | cut -d' ' -f1; }

ensure_kafka_libs() {
  local stamp
  stamp="$(pom_stamp)"
  if [[ -f "$LIBS/.stamp" && "$(cat "$LIBS/.stamp")" == "$stamp" ]] && compgen -G "$LIBS/kafka_2.13-*.jar" >/dev/null; then
    return 0
  fi
  command -v mvn >/dev/null || apt_install maven
  log "fetching Kafka jars (Maven) into $LIBS"
  rm -rf "$LIBS.tmp"
  mkdir -p "$LIBS.tmp"
  local attempt
  for attempt in 1 2 3; do
    if mvn -q -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
        -DoutputDirectory="$LIBS.tmp" >"$STACK_DIR/mvn.log" 2>&1; then
      break
    fi
    if [[ "$attempt" -eq 3 ]]; then
      tail -n 40 "$STACK_DIR/mvn.log" >&2
      die "Maven could not fetch the Kafka jars (see $STACK_DIR/mvn.log)"
    fi
    log "Maven failed (attempt $attempt); retrying"
    sleep $((attempt * 5))
  done
  echo "$stamp" >"$LIBS.tmp/.stamp"
  rm -rf "$LIBS"
  mv "$LIBS.tmp" "$LIBS"
}

# --------------------------------------------------------------------------
# Process helpers
# --------------------------------------------------------------------------
# pid_of FILE PATTERN: the pid in FILE if that process is alive and its command
# line contains PATTERN (guards against recycled pids).
pid_of() {
  local file="$1" pattern="$2" pid
  [[ -f "$file" ]] || return 1
  pid="$(tr -dc '0-9' <"$file")"
  [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$pattern" || return 1
  echo "$pid"
}

stop_pid() {
  local name="$1" pid="$2" grace="${3:-20}" i
  kill -TERM "$pid" 2>/dev/null || return 0
  kill -CONT "$pid" 2>/dev/null || true  # a stopped (hung) process handles TERM only once resumed
  for ((i = 0; i < grace * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || { log "$name stopped"; return 0; }
    sleep 0.1
  done
  log "$name did not stop in ${grace}s; killing"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
}

load_state() {
  MODE="" KAFKA_PORT="" CONTROLLER_PORT="" REDIS_PORT="" BOOTSTRAP="" REDIS_URL="" SCRAM_PORT=""
  # shellcheck disable=SC1090
  [[ -f "$STATE_FILE" ]] && source "$STATE_FILE"
  return 0
}

kafka_pid() { pid_of "$KAFKA_PID" "$STACK_DIR/server.properties"; }
redis_pid() { pid_of "$REDIS_PID" "redis-server $HOST:${REDIS_PORT:-x}"; }

# healthy [DEADLINE]: both answer (quick probe by default)
healthy() {
  local deadline="${1:-3}"
  load_state
  [[ -n "$MODE" && -f "$ENV_FILE" ]] || return 1
  if [[ "$MODE" == local ]]; then
    kafka_pid >/dev/null && redis_pid >/dev/null || return 1
  fi
  py wait kafka "$BOOTSTRAP" "$deadline" 2>/dev/null && py wait redis "$REDIS_URL" "$deadline" 2>/dev/null
}

write_env() {
  {
    printf 'export SENDGUARD_KAFKA_BOOTSTRAP_SERVERS=%q\n' "$BOOTSTRAP"
    printf 'export SENDGUARD_REDIS_URL=%q\n' "$REDIS_URL"
    if [[ -n "$SCRAM_PORT" ]]; then
      printf 'export SENDGUARD_STACK_SCRAM_BOOTSTRAP=%q\n' "$HOST:$SCRAM_PORT"
      printf 'export SENDGUARD_STACK_SCRAM_USERNAME=%q\n' "$SCRAM_USER"
      printf 'export SENDGUARD_STACK_SCRAM_PASSWORD=%q\n' "$SCRAM_SECRET"
    fi
  } >"$ENV_FILE.tmp"
  mv "$ENV_FILE.tmp" "$ENV_FILE"
}

dump_logs() {
  local f
  for f in "$KAFKA_LOG" "$REDIS_LOG"; do
    [[ -s "$f" ]] || continue
    printf '\n[stack] ---- last lines of %s ----\n' "$f" >&2
    tail -n 60 "$f" >&2
  done
}

# --------------------------------------------------------------------------
# Configuration files
# --------------------------------------------------------------------------
write_kafka_config() {
  local listeners="PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$CONTROLLER_PORT"
  local advertised="PLAINTEXT://$HOST:$KAFKA_PORT"
  local protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
  local scram=""
  if [[ -n "$SCRAM_PORT" ]]; then
    listeners+=",SASL_PLAINTEXT://$HOST:$SCRAM_PORT"
    advertised+=",SASL_PLAINTEXT://$HOST:$SCRAM_PORT"
    protocols+=",SASL_PLAINTEXT:SASL_PLAINTEXT"
    scram="sasl.enabled.mechanisms=SCRAM-SHA-256
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
  fi
  cat >"$STACK_DIR/server.properties" <<EOF
# Generated by scripts/stack.sh -- single-node KRaft, loopback only.
node.id=1
process.roles=broker,controller
controller.quorum.voters=1@$HOST:$CONTROLLER_PORT
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocols
$scram
log.dirs=$DATA/kafka
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
delete.topic.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=33554432
EOF
  cat >"$STACK_DIR/log4j2.properties" <<EOF
# Generated by scripts/stack.sh: readable broker log without the config dumps.
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c{1})%n
rootLogger.level = ${SENDGUARD_KAFKA_LOG_LEVEL:-INFO}
rootLogger.appenderRef.out.ref = OUT
EOF
  local quiet=(
    kafka.server.KafkaConfig org.apache.kafka.common.config org.apache.kafka.clients
    org.apache.kafka.common.metrics
    kafka.log org.apache.kafka.storage state.change.logger kafka.request.logger
    org.apache.kafka.raft org.apache.kafka.image org.apache.kafka.metadata
    kafka.server.metadata org.apache.kafka.server.metadata kafka.cluster kafka.server.ReplicaFetcherManager
    kafka.server.ReplicaAlterLogDirsManager org.apache.kafka.controller.ReplicationControlManager
    org.apache.kafka.controller.ConfigurationControlManager org.apache.kafka.controller.OffsetControlManager
  )
  local i=0 name
  for name in "${quiet[@]}"; do
    i=$((i + 1))
    printf 'logger.q%d.name = %s\nlogger.q%d.level = WARN\n' "$i" "$name" "$i" >>"$STACK_DIR/log4j2.properties"
  done
}

# --------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------
cmd_up_external() {
  : "${SENDGUARD_KAFKA_BOOTSTRAP_SERVERS:?SENDGUARD_EXTERNAL_STACK=1 needs SENDGUARD_KAFKA_BOOTSTRAP_SERVERS}"
  : "${SENDGUARD_REDIS_URL:?SENDGUARD_EXTERNAL_STACK=1 needs SENDGUARD_REDIS_URL}"
  BOOTSTRAP="$SENDGUARD_KAFKA_BOOTSTRAP_SERVERS"
  REDIS_URL="$SENDGUARD_REDIS_URL"
  log "external stack: waiting for Kafka at $BOOTSTRAP and Redis at $REDIS_URL"
  py wait kafka "$BOOTSTRAP" "$TIMEOUT" || die "external Kafka at $BOOTSTRAP is not answering"
  py wait redis "$REDIS_URL" "$TIMEOUT" || die "external Redis is not answering"
  printf 'MODE=external\nBOOTSTRAP=%q\nREDIS_URL=%q\n' "$BOOTSTRAP" "$REDIS_URL" >"$STATE_FILE"
  write_env
  cat "$ENV_FILE"
}

cmd_up() {
  if [[ "${SENDGUARD_EXTERNAL_STACK:-0}" == 1 ]]; then
    cmd_up_external
    return
  fi
  if healthy 5; then
    log "already running"
    cat "$ENV_FILE"
    return 0
  fi
  load_state
  if [[ "$MODE" == local ]]; then
    # A stack of ours, unhealthy: bring back what is down, keeping ports and data.
    # Only `down` deletes a stack's data.
    recover_local
  else
    start_fresh
  fi
}

# start_redis: on REDIS_PORT with its data in $DATA/redis.  Append-only file,
# fsync every second: data survives a restart, at most a second lost to a kill.
start_redis() {
  rm -f "$REDIS_PID"
  redis-server --port "$REDIS_PORT" --bind "$HOST" --protected-mode yes \
    --save '' --appendonly yes --appendfsync everysec --daemonize yes --dir "$DATA/redis" \
    --logfile "$REDIS_LOG" --pidfile "$REDIS_PID" </dev/null >/dev/null 2>&1 9>&-
}

# wait_redis DEADLINE: the pid Redis wrote, once it answers PING.
wait_redis() {
  local rpid="" deadline="$1"
  for _ in $(seq 50); do
    rpid="$(tr -dc '0-9' <"$REDIS_PID" 2>/dev/null || true)"
    [[ -n "$rpid" ]] && break
    sleep 0.1
  done
  py wait redis "$REDIS_URL" "$deadline" "$rpid" || return 1
  echo "$rpid"
}

# kafka_jvm: the JVM command line (array KAFKA_JVM) for Kafka's tools and broker.
kafka_jvm() {
  # C1-only JIT: the broker is up ~30% sooner on 2 busy cores, plenty fast for tests.
  # shellcheck disable=SC2206 # the option strings are meant to be split
  KAFKA_JVM=(java ${SENDGUARD_KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}
    ${SENDGUARD_KAFKA_JVM_OPTS:--XX:TieredStopAtLevel=1 -XX:+UseG1GC -XX:MaxGCPauseMillis=20}
    -Djava.awt.headless=true
    "-Dlog4j2.configurationFile=$STACK_DIR/log4j2.properties" "-Dkafka.logs.dir=$STACK_DIR"
    -cp "$LIBS/*")
}

# format_kafka_storage: KRaft storage into $DATA/kafka.  Formatting costs a JVM
# start, so it is done once per Kafka version into a template that every fresh
# stack copies (the storage holds no ports; each copy is a fresh cluster).
format_kafka_storage() {
  local template="$LIBS/kraft-storage-template" scram=()
  if [[ -n "$SCRAM_PORT" ]]; then
    # The SCRAM user is part of the bootstrap metadata: a template of its own.
    template="$LIBS/kraft-storage-template-scram"
    scram=(--add-scram "SCRAM-SHA-256=[name=$SCRAM_USER,password=$SCRAM_SECRET]")
  fi
  if [[ ! -f "$template/meta.properties" ]]; then
    rm -rf "$template.tmp"
    mkdir -p "$template.tmp"
    sed "s#^log.dirs=.*#log.dirs=$template.tmp#" "$STACK_DIR/server.properties" >"$STACK_DIR/format.properties"
    "${KAFKA_JVM[@]}" kafka.tools.StorageTool format -t "$(py uuid)" "${scram[@]}" \
      -c "$STACK_DIR/format.properties" >>"$KAFKA_LOG" 2>&1 </dev/null 9>&- || return 1
    rm -f "$STACK_DIR/format.properties"
    rm -rf "$template"
    mv "$template.tmp" "$template"
  fi
  rm -rf "$DATA/kafka"
  cp -a "$template" "$DATA/kafka"
}

# start_kafka: broker+controller in one JVM on the state's ports and $DATA/kafka.
start_kafka() {
  nohup setsid "${KAFKA_JVM[@]}" kafka.Kafka "$STACK_DIR/server.properties" \
    </dev/null >>"$KAFKA_LOG" 2>&1 9>&- &
  echo $! >"$KAFKA_PID"
}

start_fresh() {
  # Leftovers of a stack that never got its state written: stop its processes.
  # Data it left is moved aside, never deleted (only `down` deletes).
  local pid
  if pid="$(redis_pid)"; then stop_pid redis "$pid" 10; fi
  if pid="$(kafka_pid)"; then stop_pid kafka "$pid" 10; fi
  if [[ -d "$DATA" ]]; then
    local aside
    aside="$DATA.orphaned-$(date +%Y%m%d-%H%M%S)"
    mv "$DATA" "$aside"
    log "data of an unknown earlier stack moved to $aside (delete it if unwanted)"
  fi
  rm -f "$KAFKA_PID" "$REDIS_PID" "$ENV_FILE" "$STATE_FILE"

  local t0=$SECONDS
  ensure_tools
  ensure_kafka_libs

  read -r KAFKA_PORT CONTROLLER_PORT REDIS_PORT SCRAM_PORT < <(py ports 4)
  BOOTSTRAP="$HOST:$KAFKA_PORT"
  REDIS_URL="redis://$HOST:$REDIS_PORT/0"
  mkdir -p "$DATA/kafka" "$DATA/redis"
  {
    printf 'MODE=local\nKAFKA_PORT=%s\nCONTROLLER_PORT=%s\nREDIS_PORT=%s\nSCRAM_PORT=%s\n' \
      "$KAFKA_PORT" "$CONTROLLER_PORT" "$REDIS_PORT" "$SCRAM_PORT"
    printf 'BOOTSTRAP=%q\nREDIS_URL=%q\n' "$BOOTSTRAP" "$REDIS_URL"
  } >"$STATE_FILE"

  # Redis first: it is up in milliseconds.
  : >"$REDIS_LOG"
  start_redis || { dump_logs; die "redis-server did not start"; }

  write_kafka_config
  kafka_jvm
  : >"$KAFKA_LOG"
  if ! format_kafka_storage; then
    dump_logs
    cmd_down_locked quiet
    die "formatting KRaft storage failed"
  fi
  start_kafka

  log "waiting for Redis on $HOST:$REDIS_PORT and Kafka on $BOOTSTRAP (deadline ${TIMEOUT}s)"
  local rpid
  if ! rpid="$(wait_redis 20)"; then
    dump_logs
    cmd_down_locked quiet  # a stack just created: no one's data yet
    die "Redis did not become ready"
  fi
  if ! py wait kafka "$BOOTSTRAP" "$TIMEOUT" "$(cat "$KAFKA_PID")"; then
    dump_logs
    cmd_down_locked quiet
    die "Kafka did not become ready"
  fi
  write_env
  log "up in $((SECONDS - t0))s: Kafka $BOOTSTRAP (pid $(cat "$KAFKA_PID")), Redis $REDIS_URL (pid $rpid)"
  cat "$ENV_FILE"
}

# recover_local: restart whichever of Redis and Kafka is dead (or alive but not
# answering within the deadline) on the state's ports, with its data as it is.
# Deletes nothing: on failure it says so and leaves everything for a look.
recover_local() {
  local t0=$SECONDS pid did=()
  mkdir -p "$DATA/kafka" "$DATA/redis"
  [[ -f "$STACK_DIR/server.properties" && -f "$STACK_DIR/log4j2.properties" ]] || write_kafka_config
  if pid="$(redis_pid)" && ! py wait redis "$REDIS_URL" "$TIMEOUT" "$pid" 2>/dev/null; then
    log "Redis (pid $pid) does not answer on $REDIS_URL after ${TIMEOUT}s: stopping it"
    stop_pid redis "$pid" 10
  fi
  if ! redis_pid >/dev/null; then
    ensure_tools
    log "Redis is down: restarting it on port $REDIS_PORT with its data in $DATA/redis"
    start_redis || { dump_logs; die "redis-server did not restart on port $REDIS_PORT (data kept in $DATA/redis; \`scripts/stack.sh down\` deletes it)"; }
    did+=("Redis restarted (pid $(wait_redis 20 || echo '?'))")
  fi
  if pid="$(kafka_pid)" && ! py wait kafka "$BOOTSTRAP" "$TIMEOUT" "$pid" 2>/dev/null; then
    log "Kafka (pid $pid) does not answer on $BOOTSTRAP after ${TIMEOUT}s: stopping it"
    stop_pid kafka "$pid" 30
  fi
  if ! kafka_pid >/dev/null; then
    ensure_tools
    ensure_kafka_libs
    kafka_jvm
    if [[ ! -f "$DATA/kafka/meta.properties" ]]; then
      # Never formatted (the first `up` died before): nothing in it to keep.
      format_kafka_storage || { dump_logs; die "formatting KRaft storage failed"; }
    fi
    log "Kafka is down: restarting it on $BOOTSTRAP with its data in $DATA/kafka"
    start_kafka
    did+=("Kafka restarted (pid $(cat "$KAFKA_PID"))")
  fi
  if ! py wait redis "$REDIS_URL" 20 "$(redis_pid || true)"; then
    dump_logs
    die "Redis is not ready on $REDIS_URL; its data is kept in $DATA/redis (\`scripts/stack.sh down\` deletes it)"
  fi
  if ! py wait kafka "$BOOTSTRAP" "$TIMEOUT" "$(kafka_pid || true)"; then
    dump_logs
    die "Kafka is not ready on $BOOTSTRAP; its data is kept in $DATA/kafka (\`scripts/stack.sh down\` deletes it)"
  fi
  write_env
  if ((${#did[@]})); then
    log "recovered in $((SECONDS - t0))s, same ports and data: ${did[*]}"
  else
    log "both answer again: nothing restarted"
  fi
  cat "$ENV_FILE"
}

cmd_down_locked() {
  local quiet="${1:-}" pid
  load_state
  if [[ "$MODE" == local || -f "$KAFKA_PID" || -f "$REDIS_PID" ]]; then
    if pid="$(redis_pid)"; then
      stop_pid redis "$pid" 10
    fi
    if pid="$(kafka_pid)"; then
      stop_pid kafka "$pid" 10
    fi
  elif [[ "$MODE" == external && -z "$quiet" ]]; then
    log "external stack: nothing to stop"
  fi
  rm -rf "$DATA" "$KAFKA_PID" "$REDIS_PID" "$ENV_FILE" "$STATE_FILE" \
    "$STACK_DIR/server.properties" "$STACK_DIR/log4j2.properties"
  [[ -n "$quiet" ]] || log "down"
}

pid_note() {
  [[ "$MODE" == local ]] || return 0
  printf ', pid %s' "$("$1" 2>/dev/null || echo '?')"
}

cmd_status() {
  load_state
  local ok=0
  if [[ -z "$MODE" ]]; then
    echo "stack: not started"
    return 1
  fi
  if [[ "$MODE" == local ]] && ! kafka_pid >/dev/null; then
    echo "kafka: down"; ok=1
  elif py wait kafka "$BOOTSTRAP" 3 2>/dev/null; then
    echo "kafka: up ($BOOTSTRAP$(pid_note kafka_pid))"
  else
    echo "kafka: not answering ($BOOTSTRAP)"; ok=1
  fi
  if [[ "$MODE" == local ]] && ! redis_pid >/dev/null; then
    echo "redis: down"; ok=1
  elif py wait redis "$REDIS_URL" 3 2>/dev/null; then
    echo "redis: up ($REDIS_URL$(pid_note redis_pid))"
  else
    echo "redis: not answering ($REDIS_URL)"; ok=1
  fi
  [[ "$MODE" == external ]] && echo "(external stack)"
  return "$ok"
}

cmd_env() {
  [[ -f "$ENV_FILE" ]] || die "no $ENV_FILE: run scripts/stack.sh up"
  cat "$ENV_FILE"
}

main() {
  local cmd="${1:-}"
  case "$cmd" in
    up | down | status | env) ;;
    -h | --help | help)
      sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
      return 0 ;;
    *) die "usage: scripts/stack.sh up|down|status|env" ;;
  esac
  mkdir -p "$STACK_DIR"
  # One up/down at a time per state folder.  The servers are started with fd 9
  # closed, so they never inherit (and hold) this lock.
  exec 9>"$STACK_DIR/.lock"
  case "$cmd" in
    up | down)
      flock -w 300 9 || die "another scripts/stack.sh up/down holds $STACK_DIR/.lock"
      if [[ "$cmd" == up ]]; then cmd_up; else cmd_down_locked; fi ;;
    status) cmd_status ;;
    env) cmd_env ;;
  esac
}

main "$@"
