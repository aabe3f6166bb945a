//! The cost of reading a JSON-RPC message as the gateway does on every call: a 209-byte
//! `tools/call` parsed raw (`Message::parse`), its method, id and a member read, and a member
//! peeked deep inside (`params._meta.progressToken`) without building values.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use portcullis_mcp::Message;

const CALL: &str = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"create_refund","arguments":{"amount":2500,"currency":"usd","reason":"duplicate charge"},"_meta":{"progressToken":"p1"}}}"#;

fn bench(c: &mut Criterion) {
    c.bench_function("message_parse_tools_call_209B", |b| {
        b.iter(|| black_box(Message::parse(black_box(CALL)).unwrap()))
    });
    let msg = Message::parse(CALL).unwrap();
    c.bench_function("message_read_members", |b| {
        b.iter(|| {
            let m = black_box(&msg);
            black_box((m.method(), m.id(), m.get("params").map(|p| p.get().len())))
        })
    });
    c.bench_function("message_peek_progress_token", |b| {
        b.iter(|| black_box(black_box(&msg).peek("params", &["_meta", "progressToken"])))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
