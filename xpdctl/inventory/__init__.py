"""The inventory: one YAML file describing a cluster, loaded, checked and explained.

``load_inventory(path)`` returns a :class:`LoadedInventory` or raises ``InputError`` listing every
problem as ``file.yaml:LINE: field: what is wrong; what to do``.
"""

from xpdctl.inventory.load import LoadedInventory, load_inventory

__all__ = ["LoadedInventory", "load_inventory"]
