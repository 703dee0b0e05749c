// A FlowService client in Go, built from the code buf.gen.yaml generates: it
// creates a flow, reads it back, streams the flows, asks for a missing one,
// and prints what it saw as one JSON object for tests/e2e/test_go_client.py.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	flowservicev1 "flowservice.dev/gen/go/flowservice/v1"
)

func main() {
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(address string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := grpc.DialContext(ctx, address, grpc.WithInsecure(), grpc.WithBlock())
	if err != nil {
		return err
	}
	defer conn.Close()
	client := flowservicev1.NewFlowServiceClient(conn)

	created, err := client.CreateFlow(ctx, &flowservicev1.CreateFlowRequest{Name: "from-go", Tags: []string{"go"}})
	if err != nil {
		return err
	}
	read, err := client.ReadFlow(ctx, &flowservicev1.ReadFlowRequest{Id: created.Flow.Id})
	if err != nil {
		return err
	}
	stream, err := client.StreamFlows(ctx, &flowservicev1.StreamFlowsRequest{})
	if err != nil {
		return err
	}
	streamed := []string{}
	for {
		batch, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		for _, flow := range batch.Flows {
			streamed = append(streamed, flow.Name)
		}
	}
	_, missing := client.ReadFlow(ctx, &flowservicev1.ReadFlowRequest{Id: "00000000-0000-0000-0000-000000000000"})

	return json.NewEncoder(os.Stdout).Encode(map[string]interface{}{
		"created":      created.Created,
		"read_name":    read.Flow.Name,
		"read_tags":    read.Flow.Tags,
		"streamed":     streamed,
		"missing_code": status.Code(missing).String(),
	})
}
