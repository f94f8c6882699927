// go-elasticsearch's esutil.BulkIndexer, the Go client's bulk helper, as an application uses it
// to send documents to Elasticsearch 8 (estrom's tests, `make shippers`):
//
//	bulkindexer URL INDEX FILE
//
// Sends each line of FILE (a JSON document) to INDEX with a create action, then prints the
// indexer's figures as JSON. Exits 1 if any document failed.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esutil"
)

func main() {
	if len(os.Args) != 4 {
		log.Fatal("usage: bulkindexer URL INDEX FILE")
	}
	url, index := os.Args[1], os.Args[2]
	file, err := os.Open(os.Args[3])
	if err != nil {
		log.Fatal(err)
	}
	defer file.Close()
	client, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{url}})
	if err != nil {
		log.Fatal(err)
	}
	info, err := client.Info() // the product check is made on the first request
	if err != nil {
		log.Fatal(err)
	}
	info.Body.Close()
	if info.IsError() {
		log.Fatalf("info: %s", info.Status())
	}
	indexer, err := esutil.NewBulkIndexer(esutil.BulkIndexerConfig{
		Client:     client,
		Index:      index,
		NumWorkers: 1, // in order
		FlushBytes: 256 * 1024,
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	lines := bufio.NewScanner(file)
	for lines.Scan() {
		document := bytes.Clone(lines.Bytes())
		err := indexer.Add(ctx, esutil.BulkIndexerItem{
			Action: "create",
			Body:   bytes.NewReader(document),
			OnFailure: func(_ context.Context, item esutil.BulkIndexerItem, answer esutil.BulkIndexerResponseItem, err error) {
				log.Printf("failed: %d %s %v", answer.Status, answer.Error.Reason, err)
			},
		})
		if err != nil {
			log.Fatal(err)
		}
	}
	if err := lines.Err(); err != nil {
		log.Fatal(err)
	}
	if err := indexer.Close(ctx); err != nil {
		log.Fatal(err)
	}
	stats := indexer.Stats()
	out, _ := json.Marshal(stats)
	fmt.Println(string(out))
	if stats.NumFailed > 0 {
		os.Exit(1)
	}
}
