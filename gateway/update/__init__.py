"""Updates over the bus: update packages (an image and its MAC) and their delivery to a node.

- :mod:`gateway.update.package`: what an operator hands the gateway: a ROMFS
  image, the role it is for, its health time and the MAC the node checks.
- :mod:`gateway.update.deliver`: sends a package to one node over Modbus file
  records (functions 20/21, :mod:`protocols.update`), resumable and behind
  the bus's polls, and waits until the node runs it and confirms it.
- :mod:`gateway.update.rollout`: a fleet roll-out, canaries first, stopping at
  the first failure; :mod:`gateway.update.rollout_node` one node's steps (fresh
  or resumed), :mod:`gateway.update.rollout_store` the roll-outs kept in SQLite
  so that a gateway restart resumes them, :mod:`gateway.update.rollout_journal`
  their recording, :mod:`gateway.update.rollout_events` each step as a node event.
"""
