"""Code sandboxes: implementations of the Sandbox port."""
