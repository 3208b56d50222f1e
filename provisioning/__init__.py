"""Fleet provisioning: device identity, certificates, broker ACLs, bundles.

Arrives with the provisioning issue; the package exists so the layout and the
packaging test cover it from the start.
"""
