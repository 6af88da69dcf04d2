//! SMSC LAN9118 Ethernet controller driver as a smoltcp phy::Device.
#![no_std]
