//! tmp
pub fn f(p: &std::path::Path) -> Vec<u8> {
    let r = gix::open(p).unwrap();
    let id = r.rev_parse_single("HEAD").unwrap();
    let t = id.object().unwrap().peel_to_tree().unwrap();
    let e = t.lookup_entry_by_path("a").unwrap().unwrap();
    e.object().unwrap().data.clone()
}
