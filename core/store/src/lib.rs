//! Power-fail-safe store of named files and a double config record on NOR flash.
#![no_std]
