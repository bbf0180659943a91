#!/usr/bin/env python3
"""Writes flag items into DynamoDB exactly as the Python evaluator's service did.

The flags come as JSON (a list, or {"flags": [...]}) from --file or stdin and are
loaded with parse_float=Decimal, the way a boto3 service holds numbers, then written
one by one with boto3's resource API (Table.put_item), so numbers become N, objects M,
lists L and booleans BOOL through boto3's own serializer. The integration tests in
tests/dynamodb_store.rs run this against moto to read back real boto3-written items.

Usage: seed_dynamodb.py --endpoint URL --table NAME [--create] [--file FLAGS.json]
"""

import argparse
import json
import sys
from decimal import Decimal

import boto3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True, help="DynamoDB endpoint, e.g. http://127.0.0.1:5055")
    parser.add_argument("--table", required=True)
    parser.add_argument("--create", action="store_true", help="create the table first (hash key `key`)")
    parser.add_argument("--file", help="flags JSON; default stdin")
    parser.add_argument("--region", default="us-east-1")
    args = parser.parse_args()

    if args.file:
        with open(args.file, encoding="utf-8") as handle:
            doc = json.load(handle, parse_float=Decimal)
    else:
        doc = json.load(sys.stdin, parse_float=Decimal)
    flags = doc["flags"] if isinstance(doc, dict) else doc

    dynamodb = boto3.resource(
        "dynamodb",
        endpoint_url=args.endpoint,
        region_name=args.region,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    if args.create:
        table = dynamodb.create_table(
            TableName=args.table,
            KeySchema=[{"AttributeName": "key", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "key", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        table.wait_until_exists()
    else:
        table = dynamodb.Table(args.table)

    for flag in flags:
        table.put_item(Item=flag)
    print(f"seeded {len(flags)} flags into {args.table}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
