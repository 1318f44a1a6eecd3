//! SPIFFE identity core: IDs, trust domains, the CA, SVIDs and trust bundles.
