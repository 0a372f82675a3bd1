#!/usr/bin/env bash
# Builds (up) or removes (down) the network of a test cluster, all inside network namespaces
# (nothing is configured in the root namespace):
#
#   TAG-sw      a bridge br0 joining every other namespace
#   TAG-dp-1..3 the distribution processors     10.88.0.1-3/24  on eth0
#   TAG-target-1..2 the targets                 10.88.0.11-12/24
#   TAG-store   Redis, the coupling store       10.88.0.20/24
#   TAG-peer    strongSwan charon and a client  10.88.0.100/24, and 172.16.2.1/32 on lo (inside the tunnel)
#
# The DVIPA (10.88.0.50) is not configured: the owning DP adds it. The service subnet behind it
# is 10.77.0.0/24. Usage: scripts/cluster-netns.sh up|down TAG (root; TAG: a few letters/digits).
set -euo pipefail
action=${1:?usage: cluster-netns.sh up|down TAG}
tag=${2:?usage: cluster-netns.sh up|down TAG}
[[ $tag =~ ^[A-Za-z0-9]{1,8}$ ]] || { echo "TAG: 1 to 8 letters or digits" >&2; exit 2; }
nodes=(dp-1 dp-2 dp-3 target-1 target-2 store peer)
addrs=(10.88.0.1 10.88.0.2 10.88.0.3 10.88.0.11 10.88.0.12 10.88.0.20 10.88.0.100)

down() {
  for n in "${nodes[@]}" sw; do ip netns del "$tag-$n" 2>/dev/null || true; done
}

up() {
  down
  ip netns add "$tag-sw"
  ip -n "$tag-sw" link add br0 type bridge
  ip -n "$tag-sw" link set br0 up
  for i in "${!nodes[@]}"; do
    n=${nodes[$i]}
    ip netns add "$tag-$n"
    # create the pair inside the switch namespace, then move one end into the node's namespace
    ip -n "$tag-sw" link add "p$i" type veth peer name "i$i"
    ip -n "$tag-sw" link set "i$i" netns "$tag-$n"
    ip -n "$tag-$n" link set "i$i" name eth0
    ip -n "$tag-sw" link set "p$i" master br0
    ip -n "$tag-sw" link set "p$i" up
    ip -n "$tag-$n" addr add "${addrs[$i]}/24" dev eth0
    ip -n "$tag-$n" link set eth0 up
    ip -n "$tag-$n" link set lo up
  done
  ip -n "$tag-peer" addr add 172.16.2.1/32 dev lo
}

case $action in
  up) up ;;
  down) down ;;
  *) echo "usage: cluster-netns.sh up|down TAG" >&2; exit 2 ;;
esac
