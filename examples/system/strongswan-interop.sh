#!/usr/bin/env bash
# vipsec against strongSwan, on this machine: a real cluster of separate `vipsec node` processes
# in network namespaces, with Redis as the coupling store and strongSwan's charon as the remote
# IPsec peer.
#
#   1. scripts/cluster-netns.sh builds the network: one namespace per node, joined by a bridge
#      (dp-1..3 10.88.0.1-3, target-1..2 10.88.0.11-12, store 10.88.0.20, peer 10.88.0.100 with
#      172.16.2.1 inside the tunnel). The DVIPA 10.88.0.50 is added by whichever DP owns it.
#   2. redis-server in the store namespace; three distribution processors (dp-1 primary) and two
#      targets answering UDP requests on port 7 of the service 10.77.0.10, each a `vipsec node`.
#   3. charon in the peer namespace initiates IKEv2 (PSK, AES-GCM, NAT-T encapsulation) to the
#      DVIPA; a client behind it sends a request every 20 ms through the tunnel.
#   4. dp-1 is killed with SIGKILL; dp-2 takes over, renegotiates with charon, and the client's
#      answers resume. The script prints the takeover steps and the client's longest silence.
#
# Everything it starts is stopped by pid and the namespaces are deleted on exit, also on failure
# or Ctrl-C. Needs root, iproute2, redis-server and strongSwan (`bash scripts/install-system-deps.sh`).
# Run it: `sudo bash examples/system/strongswan-interop.sh` (test/system/examples.system.spec.ts
# runs it in `npm run test:system`). Exit status 0 if the failover worked.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
tag=x$(($$ % 1000000))
dir=$(mktemp -d /tmp/vipsec-interop-XXXXXX)
DVIPA=10.88.0.50
PSK='interop example key'
REDIS_PASSWORD='interop example password'
declare -A addr=([dp-1]=10.88.0.1 [dp-2]=10.88.0.2 [dp-3]=10.88.0.3 [target-1]=10.88.0.11
  [target-2]=10.88.0.12 [store]=10.88.0.20 [peer]=10.88.0.100)
declare -A pid=()

say() { printf '%(%T)T  %s\n' -1 "$*"; }

cleanup() {
  local status=$?
  trap - EXIT
  trap "" INT TERM # a second Ctrl-C must not stop the clean-up half-way
  for name in "${!pid[@]}"; do kill -TERM "${pid[$name]}" 2>/dev/null || true; done
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    local alive=0
    for name in "${!pid[@]}"; do kill -0 "${pid[$name]}" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.3
  done
  for name in "${!pid[@]}"; do kill -KILL "${pid[$name]}" 2>/dev/null || true; done
  bash "$root/scripts/cluster-netns.sh" down "$tag"
  if ((status != 0)); then
    echo "FAILED (exit $status); the last lines of each log:" >&2
    for log in "$dir"/*.log; do
      [[ -f $log ]] && { echo "--- $log" >&2; tail -n 8 "$log" >&2; }
    done
  fi
  [[ -n ${VIPSEC_KEEP:-} ]] || rm -rf "$dir"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits up to $1 seconds for the command after it to succeed.
wait_for() {
  local seconds=$1 what=$2
  shift 2
  for ((i = 0; i < seconds * 10; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for $what" >&2
  return 1
}

# (a function for commands in the foreground; background ones are started with `ip netns exec`
# directly, so that $! is the server's own pid: ip and unshare exec what they run)
in_ns() { ip netns exec "$tag-$1" "${@:2}"; }

# 1. the network
bash "$root/scripts/cluster-netns.sh" up "$tag"
say "network $tag-* up"

# 2. the coupling store
ip netns exec "$tag-store" redis-server --bind "${addr[store]}" --port 6379 --requirepass "$REDIS_PASSWORD" \
  --dir "$dir" --appendonly yes --save '' >"$dir/redis.log" 2>&1 &
pid[redis]=$!
wait_for 10 redis in_ns store redis-cli -h "${addr[store]}" -a "$REDIS_PASSWORD" --no-auth-warning ping

# 2. the nodes: one cluster file for all, a node file each, the secrets apart (docs/node.md),
# and one cluster key for all (`vipsec keygen`, a 0600 file)
(cd "$root" && node --import tsx --conditions=vipsec-source packages/cli/src/bin.ts keygen --out "$dir/cluster.key") >/dev/null
cat >"$dir/cluster.yaml" <<EOF
store: { type: redis, address: ${addr[store]}:6379, prefix: "$tag:" }
nodes:
  dp-1: ${addr[dp-1]}
  dp-2: ${addr[dp-2]}
  dp-3: ${addr[dp-3]}
  target-1: ${addr[target-1]}
  target-2: ${addr[target-2]}
dvipas:
  $DVIPA: { ranks: [dp-1, dp-2, dp-3], targets: [target-1, target-2] }
connections:
  peer:
    proposals: aes256gcm16-prfsha256-x25519
    rekey_time: 0
    local: { id: vpn.cluster.test }
    remote: { id: peer.example.test }
    children:
      net: { local_ts: 10.77.0.0/24, remote_ts: 172.16.2.1/32, esp_proposals: aes256gcm16, rekey_time: 0 }
EOF
(umask 077 && cat >"$dir/secrets.yaml" <<EOF
ike:
  peer: { id: peer.example.test, secret: "$PSK" }
store: { password: "$REDIS_PASSWORD" }
EOF
)
for n in dp-1 dp-2 dp-3 target-1 target-2; do
  printf 'node: %s\ncluster: cluster.yaml\nsecrets: secrets.yaml\ninterface: eth0\ncluster_key_files: [cluster.key]\n' "$n" >"$dir/$n.yaml"
done
for t in target-1 target-2; do echo 'apps: [{ app: request-response, port: 7 }]' >>"$dir/$t.yaml"; done
start_node() {
  (cd "$root" && exec ip netns exec "$tag-$1" node --import tsx --conditions=vipsec-source \
    packages/cli/src/bin.ts node --config "$dir/$1.yaml") >"$dir/$1.log" 2>&1 &
  pid[$1]=$!
}
start_node dp-1
wait_for 60 'dp-1 to claim the DVIPA' grep -q '"type":"ownership:claimed"' "$dir/dp-1.log"
say "dp-1 owns $DVIPA"
for n in dp-2 dp-3 target-1 target-2; do start_node "$n"; done
for n in dp-1 dp-2 dp-3 target-1 target-2; do
  wait_for 60 "$n to start" grep -q '"type":"node:started"' "$dir/$n.log"
done
say "dp-2, dp-3, target-1 and target-2 started"

# 3. the peer: charon in its own mount namespace (it writes /run), configured through vici
mkdir -p "$dir/charon"
vici="unix://$dir/charon/charon.vici"
cat >"$dir/charon/strongswan.conf" <<EOF
charon {
  load = random nonce openssl pem pkcs1 pkcs8 x509 pubkey hmac kdf kernel-libipsec kernel-netlink socket-default vici updown
  install_virtual_ip = no
  retransmit_tries = 3
  plugins { vici { socket = $vici } }
  filelog { main { path = $dir/charon.log
    default = 1 } }
}
EOF
cat >"$dir/charon/swanctl.conf" <<EOF
connections {
  dvipa {
    version = 2
    local_addrs = ${addr[peer]}
    remote_addrs = $DVIPA
    proposals = aes256gcm16-prfsha256-x25519
    encap = yes
    rekey_time = 0
    local { auth = psk
      id = peer.example.test }
    remote { auth = psk
      id = vpn.cluster.test }
    children {
      net { local_ts = 172.16.2.1/32
        remote_ts = 10.77.0.0/24
        esp_proposals = aes256gcm16
        rekey_time = 0 }
    }
  }
}
secrets {
  ike-cluster { id-1 = peer.example.test
    id-2 = vpn.cluster.test
    secret = "$PSK" }
}
EOF
ip netns exec "$tag-peer" unshare -m sh -c "mount -t tmpfs none /run && STRONGSWAN_CONF=$dir/charon/strongswan.conf exec /usr/lib/ipsec/charon" \
  >/dev/null 2>&1 &
pid[charon]=$!
wait_for 10 charon swanctl --stats --uri "$vici" 2>/dev/null
swanctl --load-all --file "$dir/charon/swanctl.conf" --uri "$vici" 2>/dev/null >/dev/null
swanctl --initiate --child net --uri "$vici" 2>/dev/null >/dev/null
ike_sas() { swanctl --list-sas --uri "$vici" 2>/dev/null | grep ESTABLISHED || true; }
say "charon: $(ike_sas | cut -d, -f1-2) with $DVIPA"

# the client behind charon: a request every 20 ms, one line per answer (target and time)
ip netns exec "$tag-peer" node -e '
  const s = require("node:dgram").createSocket("udp4")
  s.on("message", (m) => console.log(m.toString().split(" ")[0], Date.now()))
  s.bind(41000, "172.16.2.1", () => setInterval(() => s.send("req", 7, "10.77.0.10"), 20))
  setTimeout(() => process.exit(0), 120000)' >"$dir/client.log" 2>&1 &
pid[client]=$!
answers() { (($(wc -l <"$dir/client.log") >= $1)); }
wait_for 20 'answers through the tunnel' answers 10
say "client: $(wc -l <"$dir/client.log") answers so far, from $(cut -d' ' -f1 "$dir/client.log" | sort -u | tr '\n' ' ')"

# 4. the failover
before=$(awk 'END { print $2 }' "$dir/client.log")
kill -KILL "${pid[dp-1]}"
{ wait "${pid[dp-1]}"; } 2>/dev/null || true # (quietly: no "Killed" from bash)
killed_at=$(date +%s%3N)
say "dp-1 killed with SIGKILL"
wait_for 30 'dp-2 to take over' grep -q '"type":"takeover:completed"' "$dir/dp-2.log"
wait_for 30 'answers after the takeover' awk -v t="$killed_at" '$2 > t + 50 { found = 1 } END { exit !found }' "$dir/client.log"
sleep 1
grep '"type":"takeover:completed"' "$dir/dp-2.log" | head -n 1 |
  jq -r '"dp-2 took over: epoch \(.report.epoch), \(.report.renegotiated) IKE SA renegotiated, \(.report.connections) connections", (.report.steps[] | "  \(.step)\t\(.durationMs * 10 | round / 10) ms")'
outage=$(awk -v t="$before" '$2 >= t { if (last && $2 - last > gap) gap = $2 - last; last = $2 } END { print gap + 0 }' "$dir/client.log")
after=$(awk -v t="$killed_at" '$2 > t { print $1 }' "$dir/client.log" | sort -u | tr '\n' ' ')
say "client: answers resumed from $after; longest silence ${outage} ms"
say "charon: $(ike_sas | cut -d, -f1-2) (a new IKE SA, negotiated by dp-2)"
(($(ike_sas | wc -l) == 1)) || { echo "charon should hold exactly one IKE SA" >&2; exit 1; }
say "interop OK"
