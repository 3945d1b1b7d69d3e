"""A2A both ways: agents serve the A2A protocol; external A2A agents join the mesh."""
