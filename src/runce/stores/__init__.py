"""Storage: the contract (:mod:`runce.stores.base`), the registry and one module per backend."""
