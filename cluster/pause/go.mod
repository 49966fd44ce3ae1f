module inferscale.local/cluster/pause

go 1.22
