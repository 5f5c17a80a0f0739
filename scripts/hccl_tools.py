r"""Write an HCCL rank table for the Ascend devices of this machine.

    python scripts/hccl_tools.py --device_num "[0,8)" [--server_ip 10.0.0.1] \
        [--hccn_conf /etc/hccn.conf] [--output_dir .]

Reads each device's IP address from /etc/hccn.conf (lines ``address_<id>=<ip>``,
written by the Ascend driver's hccn_tool) and writes
``hccl_<n>p_<devices>_<server ip>.json`` in the rank-table format version 1.0
that run_distribute_ascend.sh passes as RANK_TABLE_FILE. The devices of one
job must lie in one half ([0,4) or [4,8)) or span all eight.

Several servers: make each server's table on that server, copy them to one
place and merge them (ranks numbered server by server, in the order given);
every server then launches with the merged table and starts its own devices:

    python scripts/hccl_tools.py --merge hccl_8p_01234567_10.0.0.1.json hccl_8p_01234567_10.0.0.2.json
"""
import argparse
import json
import os
import re
import socket
import sys


def parse_range(text):
    """``"[0,8)"`` -> ``[0, 1, ..., 7]``."""
    match = re.fullmatch(r"\s*\[\s*(\d+)\s*,\s*(\d+)\s*\)\s*", text)
    if not match:
        raise ValueError(f"--device_num must look like \"[0,8)\", got {text!r}")
    first, end = int(match.group(1)), int(match.group(2))
    if not 0 <= first < end <= 8:
        raise ValueError(f"device range [{first},{end}) must lie within [0,8) and not be empty")
    devices = list(range(first, end))
    if len(devices) > 1 and len(devices) < 8 and (first < 4) != (end - 1 < 4):
        raise ValueError(f"devices {devices} cross the two groups of four: use [0,4), [4,8) or [0,8)")
    return devices


def read_device_ips(path):
    """``{device id: ip}`` from an hccn.conf file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: it is written by the Ascend driver (hccn_tool "
                                "-i <id> -ip -s address ...); pass --hccn_conf if it lives elsewhere")
    ips = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            match = re.match(r"\s*address_(\d+)\s*=\s*(\S+)", line)
            if match:
                ips[int(match.group(1))] = match.group(2)
    return ips


def rank_table(devices, device_ips, server_ip):
    missing = [d for d in devices if d not in device_ips]
    if missing:
        raise ValueError(f"no address for device(s) {missing} in hccn.conf")
    return {
        "version": "1.0",
        "server_count": "1",
        "server_list": [{
            "server_id": server_ip,
            "device": [{"device_id": str(d), "device_ip": device_ips[d], "rank_id": str(rank)}
                       for rank, d in enumerate(devices)],
            "host_nic_ip": "reserve",
        }],
        "status": "completed",
    }


def merge_tables(tables):
    """One rank table over the servers of several one-server tables."""
    servers, rank = [], 0
    for table in tables:
        for server in table["server_list"]:
            if any(s["server_id"] == server["server_id"] for s in servers):
                raise ValueError(f"server {server['server_id']} appears in more than one table")
            devices = []
            for dev in sorted(server["device"], key=lambda d: int(d["rank_id"])):
                devices.append(dict(dev, rank_id=str(rank)))
                rank += 1
            servers.append(dict(server, device=devices))
    if not servers:
        raise ValueError("no servers to merge")
    return {"version": "1.0", "server_count": str(len(servers)), "server_list": servers,
            "status": "completed"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device_num", default="[0,8)", help='devices as a half-open range, e.g. "[0,8)"')
    parser.add_argument("--server_ip", default=None, help="this server's IP (default: resolved host name)")
    parser.add_argument("--hccn_conf", default="/etc/hccn.conf", help="device address file")
    parser.add_argument("--output_dir", default=".", help="folder for the rank table")
    parser.add_argument("--merge", nargs="+", metavar="TABLE",
                        help="merge these servers' tables into one multi-server table")
    args = parser.parse_args(argv)
    if args.merge:
        try:
            tables = []
            for path in args.merge:
                with open(path, encoding="utf-8") as fh:
                    tables.append(json.load(fh))
            table = merge_tables(tables)
        except (ValueError, KeyError, OSError, json.JSONDecodeError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        ranks = sum(len(s["device"]) for s in table["server_list"])
        name = f"hccl_{ranks}p_{len(table['server_list'])}servers.json"
        return _write(table, args.output_dir, name)
    try:
        devices = parse_range(args.device_num)
        ips = read_device_ips(args.hccn_conf)
        server_ip = args.server_ip or socket.gethostbyname(socket.gethostname())
        table = rank_table(devices, ips, server_ip)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    name = f"hccl_{len(devices)}p_{''.join(map(str, devices))}_{server_ip}.json"
    return _write(table, args.output_dir, name)


def _write(table, directory, name):
    path = os.path.join(directory, name)
    os.makedirs(directory, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(table, fh, indent=4)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
