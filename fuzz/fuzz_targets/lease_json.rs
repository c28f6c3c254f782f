//! The HTTP transport's Lease decoder: never panics; a decodable lease survives a write and a
//! second decode unchanged.
#![no_main]

use leasehold_adapter_http::wire::decode_lease;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(object) = decode_lease(data) else {
        return;
    };
    let Ok(lease) = object.to_core() else { return };
    if lease.record.holder.as_wire().is_none() {
        return;
    }
    let name = object.metadata.name.clone().unwrap_or_else(|| "x".into());
    let written = object.for_write(&name, Some(lease.resource_version.as_str()), &lease.record);
    let bytes = serde_json::to_vec(&written).expect("serialises");
    let again = decode_lease(&bytes)
        .expect("our own write decodes")
        .to_core()
        .expect("and converts");
    assert_eq!(again.record, lease.record, "a write changes the record");
    assert_eq!(again.resource_version, lease.resource_version);
});
