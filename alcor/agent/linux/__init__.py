"""The Linux data plane the agent programs by default: per-VNI bridges and kernel VXLAN
(overlay), local workload interfaces (workloads), nftables security groups (firewall) and an
in-agent DHCPv4 responder (dhcp_packet, dhcp_responder), composed by ``LinuxProgrammer``."""
