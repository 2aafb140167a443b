//! Exporting the raw disk for each hypervisor and cloud.
