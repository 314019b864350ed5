"""The Linux data plane the agent programs by default: per-VNI bridges and kernel VXLAN
(overlay), local workload interfaces (workloads), nftables security groups (firewall), an
in-agent DHCPv4 responder (dhcp_packet, dhcp_responder) and distributed routers in a namespace
per router (router, router_namespace, nat, provider), composed by ``LinuxProgrammer``."""
