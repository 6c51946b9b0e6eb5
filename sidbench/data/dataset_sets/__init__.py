"""Package data: the manifests of the datasets ``sidbench data fetch`` downloads (read by ``sidbench.data.dataset_table``).

One ``<name>.json`` per dataset; see README.md here for the fields.
"""
