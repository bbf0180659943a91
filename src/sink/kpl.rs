//! The KPL aggregated-record format: several events in one Kinesis record, as the
//! Kinesis Producer Library packs them, so Kinesis bills one record (and one 25 KB PUT
//! payload unit) for many events. The Kinesis Client Library, Kinesis Data Firehose and
//! AWS's de-aggregation modules for Lambda (Python `aws_kinesis_agg`, Node
//! `aws-kinesis-agg`, Java) unpack it into the original records, partition keys included.
//!
//! A record is the magic number `F3 89 9A C2`, a protocol-buffers `AggregatedRecord`
//! (proto2), and the MD5 of that message:
//!
//! ```text
//! AggregatedRecord { repeated string partition_key_table = 1;
//!                    repeated string explicit_hash_key_table = 2;
//!                    repeated Record records = 3; }
//! Record           { required uint64 partition_key_index = 1;
//!                    optional uint64 explicit_hash_key_index = 2;
//!                    required bytes data = 3; }
//! ```
//!
//! Three messages of at most three fields, encode only: written here rather than
//! generated (no Rust crate implements the format; a protobuf code generator would add a
//! build step for 60 lines). The reference de-aggregator reads what this writes
//! (`tests/kpl_aggregation.rs`).

use std::ops::Range;

use md5::{Digest, Md5};

use super::EventRecord;

/// The KPL's magic number, first in every aggregated record.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];

/// Bytes an aggregated record adds around its message: the magic number and the MD5.
const FRAME: usize = MAGIC.len() + 16;

/// The most one event adds to a message beyond its data and partition key: the record's
/// tag and length, the index field, the data's tag and length (≤ 5-byte varints), and
/// its key's entry in the table (tag and length).
pub const PER_EVENT_OVERHEAD: usize = 1 + 5 + 1 + 5 + 1 + 5 + 1 + 5;

/// One aggregated record: its partition key (its first event's), its bytes, and the
/// events it holds (indices into the slice that was packed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed {
    /// The Kinesis partition key of the whole record: its first event's key, so the
    /// record goes to that event's shard.
    pub partition_key: String,
    /// Magic number, message, MD5.
    pub data: Vec<u8>,
    /// The events packed in it, in order.
    pub members: Range<usize>,
}

/// Packs `records` in order into aggregated records of at most `target` bytes (data plus
/// partition key) each; an event that would not fit even alone gets a record of its own,
/// however large (the sink's per-record limit still bounds it).
pub fn pack(records: &[EventRecord], target: usize) -> Vec<Packed> {
    let mut packed = Vec::new();
    let mut start = 0;
    while start < records.len() {
        let mut end = start + 1;
        let mut estimate = FRAME + size(&records[start]) + records[start].partition_key.len();
        while end < records.len() {
            let next = size(&records[end]) + records[end].partition_key.len();
            if estimate + next > target {
                break;
            }
            estimate += next;
            end += 1;
        }
        packed.push(encode(&records[start..end], start));
        start = end;
    }
    packed
}

/// The bytes one event can add to a record, partition key in the table included.
fn size(record: &EventRecord) -> usize {
    record.data.len() + record.partition_key.len() + PER_EVENT_OVERHEAD
}

/// One aggregated record of `records`, which start at index `offset` of the packed slice.
fn encode(records: &[EventRecord], offset: usize) -> Packed {
    // The partition-key table: each distinct key once, in order of first use.
    let mut keys: Vec<&str> = Vec::new();
    let mut indices = Vec::with_capacity(records.len());
    for record in records {
        let index = match keys.iter().position(|k| *k == record.partition_key) {
            Some(i) => i,
            None => {
                keys.push(&record.partition_key);
                keys.len() - 1
            }
        };
        indices.push(index as u64);
    }
    let mut message = Vec::with_capacity(records.iter().map(size).sum());
    for key in &keys {
        field_bytes(&mut message, 1, key.as_bytes());
    }
    let mut record_bytes = Vec::new();
    for (record, index) in records.iter().zip(indices) {
        record_bytes.clear();
        field_varint(&mut record_bytes, 1, index);
        field_bytes(&mut record_bytes, 3, &record.data);
        field_bytes(&mut message, 3, &record_bytes);
    }
    let mut data = Vec::with_capacity(FRAME + message.len());
    data.extend_from_slice(&MAGIC);
    data.extend_from_slice(&message);
    data.extend_from_slice(&Md5::digest(&message));
    let partition_key = records.first().map(|r| r.partition_key.clone()).unwrap_or_default();
    Packed { partition_key, data, members: offset..offset + records.len() }
}

/// A length-delimited field (wire type 2).
fn field_bytes(out: &mut Vec<u8>, number: u64, bytes: &[u8]) {
    varint(out, number << 3 | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A varint field (wire type 0).
fn field_varint(out: &mut Vec<u8>, number: u64, value: u64) {
    varint(out, number << 3);
    varint(out, value);
}

/// Base-128 varint, least significant group first.
fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7F) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &str, data: &str) -> EventRecord {
        EventRecord { partition_key: key.to_owned(), data: data.as_bytes().to_vec() }
    }

    /// A minimal reader of what `encode` writes (the consumer-side proof is the reference
    /// de-aggregator in `tests/kpl_aggregation.rs`).
    fn unpack(data: &[u8]) -> Vec<(String, Vec<u8>)> {
        assert_eq!(&data[..4], MAGIC);
        let (message, digest) = data[4..].split_at(data.len() - 20);
        assert_eq!(Md5::digest(message).as_slice(), digest, "checksum");
        let mut keys = Vec::new();
        let mut out = Vec::new();
        let mut rest = message;
        while !rest.is_empty() {
            let (tag, bytes, after) = read_field(rest);
            rest = after;
            match tag {
                1 => keys.push(String::from_utf8(bytes.to_vec()).expect("utf-8 key")),
                3 => {
                    let (t1, index, after) = read_field(bytes);
                    assert_eq!(t1, 1);
                    let (t3, payload, end) = read_field(after);
                    assert_eq!((t3, end.len()), (3, 0));
                    out.push((index_of(index), payload.to_vec()));
                }
                other => panic!("unexpected field {other}"),
            }
        }
        out.into_iter().map(|(i, d)| (keys[i].clone(), d)).collect()
    }

    fn index_of(varint_bytes: &[u8]) -> usize {
        read_varint(varint_bytes).0 as usize
    }

    fn read_varint(bytes: &[u8]) -> (u64, &[u8]) {
        let (mut value, mut shift, mut i) = (0u64, 0, 0);
        loop {
            let b = bytes[i];
            value |= u64::from(b & 0x7F) << shift;
            i += 1;
            if b < 0x80 {
                return (value, &bytes[i..]);
            }
            shift += 7;
        }
    }

    /// (field number, payload: the varint's bytes or the delimited bytes, the rest).
    fn read_field(bytes: &[u8]) -> (u64, &[u8], &[u8]) {
        let (key, rest) = read_varint(bytes);
        match key & 7 {
            0 => {
                let (_, after) = read_varint(rest);
                let used = rest.len() - after.len();
                (key >> 3, &rest[..used], after)
            }
            2 => {
                let (len, after) = read_varint(rest);
                let (payload, after) = after.split_at(len as usize);
                (key >> 3, payload, after)
            }
            other => panic!("wire type {other}"),
        }
    }

    #[test]
    fn varints_are_base_128() {
        for (value, bytes) in
            [(0u64, vec![0u8]), (1, vec![1]), (127, vec![127]), (128, vec![0x80, 1]), (300, vec![0xAC, 2])]
        {
            let mut out = Vec::new();
            varint(&mut out, value);
            assert_eq!(out, bytes, "{value}");
        }
    }

    #[test]
    fn packs_in_order_shares_keys_and_round_trips() {
        let records = vec![record("u1", "{\"a\":1}"), record("u2", "{\"b\":2}"), record("u1", "{\"c\":3}")];
        let packed = pack(&records, 1 << 20);
        assert_eq!(packed.len(), 1);
        assert_eq!((packed[0].partition_key.as_str(), packed[0].members.clone()), ("u1", 0..3));
        let unpacked = unpack(&packed[0].data);
        let expected: Vec<(String, Vec<u8>)> =
            records.iter().map(|r| (r.partition_key.clone(), r.data.clone())).collect();
        assert_eq!(unpacked, expected);
        // The key table holds each key once: "u1" twice in the events, once in the record.
        assert_eq!(packed[0].data.windows(2).filter(|w| *w == b"u1").count(), 1);
    }

    #[test]
    fn records_stay_within_the_target_and_an_oversized_event_goes_alone() {
        let mut records: Vec<EventRecord> = (0..500).map(|i| record(&format!("user-{i}"), &"x".repeat(200))).collect();
        records.insert(100, record("big", &"y".repeat(40_000)));
        let target = 25_000;
        let packed = pack(&records, target);
        let mut next = 0;
        for p in &packed {
            assert_eq!(p.members.start, next, "contiguous, in order");
            next = p.members.end;
            let bytes = p.data.len() + p.partition_key.len();
            if p.members.len() > 1 {
                assert!(bytes <= target, "{bytes} > {target}");
            }
            let unpacked = unpack(&p.data);
            assert_eq!(unpacked.len(), p.members.len());
            for ((key, data), record) in unpacked.iter().zip(&records[p.members.clone()]) {
                assert_eq!((key, data), (&record.partition_key, &record.data));
            }
        }
        assert_eq!(next, records.len(), "every event packed once");
        assert!(packed.iter().any(|p| p.members.len() == 1 && p.partition_key == "big"));
        assert!(packed.len() < 10, "~110 events of 200 bytes per 25 kB record: {}", packed.len());
    }
}
