"""The guest tests (tests/vm/guest/) need the VM's kernel (IPIP) and root: on the host they are
not even collected; tests/vm/test_in_vm.py boots the VM, runs them there and reports each one."""

import os

collect_ignore = [] if os.environ.get("WREN_IN_VM") == "1" else ["guest"]
