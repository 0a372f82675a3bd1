#!/usr/bin/env bash
# Installs the Debian packages that the system tests need, if any is missing (run as root).
# redis-server: coupling store; redis-sentinel: its failover (history checker); etcd-server and
# etcd-client: the etcd coupling store; strongswan (charon, swanctl, kernel-libipsec, the openssl
# plugin): the real IPsec peer; openssl: test certificates; tshark: independent decoding of IKE
# and ESP; python3-cryptography: a second ChaCha20-Poly1305 ESP opener (tshark 4.0 has none);
# iproute2: network namespaces; nftables: the NAT between namespaces in the interop matrix;
# iperf3, curl, python3: real applications behind the DVIPA;
# systemd (systemd-notify) and python3: the Type=notify tests; chromium: the status page's test.
set -euo pipefail
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-sentinel >/dev/null || need+=(redis-sentinel)
command -v etcd >/dev/null || need+=(etcd-server)
command -v etcdctl >/dev/null || need+=(etcd-client)
[ -x /usr/lib/ipsec/charon ] || need+=(strongswan-charon)
command -v swanctl >/dev/null || need+=(strongswan-swanctl)
[ -f /usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so ] || need+=(libcharon-extra-plugins)
# charon's AES-GCM and X25519 come from its openssl plugin (a Recommends, not a Depends)
[ -f /usr/lib/ipsec/plugins/libstrongswan-openssl.so ] || need+=(libstrongswan-standard-plugins)
command -v openssl >/dev/null || need+=(openssl)
command -v tshark >/dev/null || need+=(tshark)
/usr/bin/python3 -c 'import cryptography.hazmat.primitives.ciphers.aead' 2>/dev/null || need+=(python3-cryptography)
command -v ip >/dev/null || need+=(iproute2)
command -v nft >/dev/null || need+=(nftables)
command -v arping >/dev/null || need+=(iputils-arping)
# the kernel-delivery system tests and bench:dataplane: stock servers and clients
command -v iperf3 >/dev/null || need+=(iperf3)
command -v curl >/dev/null || need+=(curl)
[ -x /usr/bin/python3 ] || need+=(python3)
command -v systemd-notify >/dev/null || need+=(systemd)
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ ${#need[@]} -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "system packages missing (${need[*]}) and not root: install them with apt-get" >&2
  exit 1
fi
echo "installing: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
# tshark asks whether non-root users may capture; answer no without a prompt.
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "installed: ${need[*]}"
