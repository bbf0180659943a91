"""A Kinesis consumer as analytics teams write one: read every shard of a stream with
boto3, hand the records to AWS's own de-aggregation module (aws_kinesis_agg) in the
shape a Lambda consumer receives them, and print
each user record as a JSON line {"partition_key", "data" (base64)}; the first line is
{"kinesis_records": N}, how many records the stream itself held.

Usage: kinesis_consumer.py --endpoint URL --stream NAME
"""
import argparse
import base64
import json

import boto3
from aws_kinesis_agg.deaggregator import iter_deaggregate_records


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--stream", required=True)
    args = parser.parse_args()
    kinesis = boto3.client("kinesis", endpoint_url=args.endpoint, region_name="us-east-1",
                           aws_access_key_id="test", aws_secret_access_key="test")
    raw = []
    for shard in kinesis.list_shards(StreamName=args.stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(StreamName=args.stream, ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator)
            if not page["Records"]:
                break
            raw.extend(page["Records"])
            iterator = page.get("NextShardIterator")
    print(json.dumps({"kinesis_records": len(raw)}))
    # As a Lambda consumer receives them (the event source mapping's record shape).
    event_records = [{"kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": r["PartitionKey"],
                                  "sequenceNumber": r["SequenceNumber"],
                                  "data": base64.b64encode(r["Data"]).decode(),
                                  "approximateArrivalTimestamp": 0}} for r in raw]
    for record in iter_deaggregate_records(event_records):
        kinesis_record = record["kinesis"]
        data = kinesis_record["data"]
        if isinstance(data, bytes):
            data = data.decode("ascii")
        print(json.dumps({"partition_key": kinesis_record["partitionKey"], "data": data}))


if __name__ == "__main__":
    main()
