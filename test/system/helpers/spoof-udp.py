# Sends UDP datagrams with any source address and port, from a raw socket (IP_HDRINCL): the
# attacker of cluster-attack.system.spec.ts. Usage: spoof-udp.py FILE GAP_MS, FILE a JSON list of
# { "from": { "address", "port" }, "to": { "address", "port" }, "hex": payload }. Needs root.
import json, socket, struct, sys, time
datagrams = json.load(open(sys.argv[1]))
gap = float(sys.argv[2]) / 1000
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for d in datagrams:
    data = bytes.fromhex(d['hex'])
    src, dst = socket.inet_aton(d['from']['address']), socket.inet_aton(d['to']['address'])
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 28 + len(data), 0, 0, 64, 17, 0, src, dst)
    udp = struct.pack('!HHHH', d['from']['port'], d['to']['port'], 8 + len(data), 0)
    s.sendto(ip + udp + data, (d['to']['address'], 0))
    if gap > 0:
        time.sleep(gap)
