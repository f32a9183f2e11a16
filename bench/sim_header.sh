# Column names of rumor-sim --summary lines (sourced by bench/sim_*.sh).
sim_header() {
	printf '#name\tN\tseed\tlifeguard\tloss'
	printf '\tjoin50\tjoin99\tjoin100'
	printf '\tfail_first_suspect\tfail_first_dead\tfail50\tfail99\tfail100'
	printf '\tleave50\tleave99\tleave100'
	printf '\tfp\tfp_per_node_hour\tfalse_suspicions\tpkts_node_s\tbytes_node_s'
	printf '\ttcp_bytes_node_s\tkib_per_node\twall_s\tviolations\n'
}
