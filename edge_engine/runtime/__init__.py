"""The pipeline runtime: capture loops, the serving stage, business instances, and their mailboxes."""
