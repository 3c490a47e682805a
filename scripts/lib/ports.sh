# Sourced by the scripts that start servers on loopback.
# shellcheck shell=bash

# Prints N distinct free loopback ports: all are held open until every one is chosen.
free_ports() {
  python3 - "${1:-1}" <<'PY'
import socket, sys
held = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    held.append(s)
print(" ".join(str(s.getsockname()[1]) for s in held))
PY
}
