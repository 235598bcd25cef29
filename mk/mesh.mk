# The mesh of servers (synctl serve --peer, tools/synctl/serve_mesh.c):
# tests/mesh.sh in make test (3 servers, 50 devices, 2 rounds, one server
# killed and restarted), and a longer run of it in make soak.

TEST_EXTRA += tests/mesh.sh

MESH_SOAK_ROUNDS ?= 30
.PHONY: soak-mesh
soak: soak-mesh
soak-mesh: $(B)/synctl
	cd $(B) && MESH_ROUNDS=$(MESH_SOAK_ROUNDS) sh ../tests/mesh.sh

# bench/run_mesh.c runs synctl serve processes: make bench builds it.
bench: $(B)/synctl
