package sqstest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Admiral-Piett/goaws/app"
	"github.com/Admiral-Piett/goaws/app/gosqs"
	"github.com/Admiral-Piett/goaws/app/router"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/schemas"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go/transport/http/protocol/awsquery"
	"github.com/sirupsen/logrus"

	"github.com/sluice-gw/sluice/model"
)

// Region is the region sources and clients name (goaws accepts any).
const Region = "us-east-1"

// Server is the process's goaws server and an SDK client for it.
type Server struct {
	// Endpoint is the server's base URL, http://127.0.0.1:port.
	Endpoint string
	// Client talks to it with the query protocol and dummy static credentials.
	Client *awssqs.Client
}

var (
	once    sync.Once
	shared  *Server
	initErr error
	queues  atomic.Int64 // makes queue names unique within the process
)

// Start returns the process's server, starting it on the first call. It lives until the
// process exits: goaws's state is global, so it could not be started twice.
func Start(t testing.TB) *Server {
	t.Helper()
	once.Do(func() {
		// goaws logs every message at info level through logrus.
		logrus.SetLevel(logrus.WarnLevel)
		logrus.SetOutput(io.Discard)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			initErr = err
			return
		}
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		// Queue URLs goaws hands out name this host and port, and an account.
		app.CurrentEnvironment.Host = "127.0.0.1"
		app.CurrentEnvironment.Port = port
		app.CurrentEnvironment.AccountID = "100010001000"
		srv := &http.Server{Handler: orderCreates(router.New()), ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		// Makes received messages visible again after their timeout (goaws's main does this;
		// its router alone does not).
		go gosqs.PeriodicTasks(200*time.Millisecond, make(chan struct{}))
		endpoint := "http://" + ln.Addr().String()
		shared = &Server{Endpoint: endpoint, Client: NewClient(endpoint)}
	})
	if initErr != nil {
		t.Fatalf("sqstest: starting goaws: %v", initErr)
	}
	return shared
}

// orderCreates makes every request start after any CreateQueue that finished before it. goaws
// writes its global queue map under a lock in CreateQueue but reads it unlocked in every other
// action; a test creates its queue and then uses it over another connection, which is ordered in
// fact but not in a way the race detector can see (it cannot follow causality through a socket),
// so -race reported goaws's map read as a race with the earlier create. The mutex gives that order
// a happens-before edge. Long polls do not hold it, so they never delay a create.
func orderCreates(h http.Handler) http.Handler {
	var mu sync.Mutex
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		mu.Lock()
		if bytes.Contains(body, []byte("Action=CreateQueue")) {
			defer mu.Unlock()
		} else {
			mu.Unlock()
		}
		h.ServeHTTP(w, r)
	})
}

// NewClient returns an SDK client for a goaws endpoint.
func NewClient(endpoint string) *awssqs.Client {
	return awssqs.New(awssqs.Options{
		Region:       Region,
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
	}, func(o *awssqs.Options) {
		// New sets the JSON protocol after reading Options; only an option function overrides it.
		o.Protocol = awsquery.New(schemas.AmazonSQS)
	})
}

// CreateQueue creates a queue whose name starts with prefix and whose received messages stay
// hidden for visibility seconds, and returns its URL.
func (s *Server) CreateQueue(t testing.TB, prefix string, visibility int) string {
	t.Helper()
	name := fmt.Sprintf("%s-%d", prefix, queues.Add(1))
	out, err := s.Client.CreateQueue(context.Background(), &awssqs.CreateQueueInput{
		QueueName:  aws.String(name),
		Attributes: map[string]string{"VisibilityTimeout": strconv.Itoa(visibility)},
	})
	if err != nil {
		t.Fatalf("sqstest: creating queue %s: %v", name, err)
	}
	return aws.ToString(out.QueueUrl)
}

// Section is a source's sqs section for queueURL on this server.
func (s *Server) Section(queueURL, deadLetterURL string, visibility int) *model.SQSSource {
	return &model.SQSSource{
		QueueURL: queueURL, Region: Region, Endpoint: s.Endpoint, Protocol: "query",
		AccessKeyID: "test", SecretAccessKey: "test",
		VisibilityTimeout: visibility, DeadLetterQueueURL: deadLetterURL,
	}
}

// Send sends one message with string attributes and returns its MessageId.
func (s *Server) Send(t testing.TB, queueURL string, body []byte, attrs map[string]string) string {
	t.Helper()
	in := &awssqs.SendMessageInput{QueueUrl: aws.String(queueURL), MessageBody: aws.String(string(body))}
	if len(attrs) > 0 {
		in.MessageAttributes = make(map[string]types.MessageAttributeValue, len(attrs))
		for k, v := range attrs {
			in.MessageAttributes[k] = types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
		}
	}
	out, err := s.Client.SendMessage(context.Background(), in)
	if err != nil {
		t.Fatalf("sqstest: sending to %s: %v", queueURL, err)
	}
	return aws.ToString(out.MessageId)
}

// Receive takes up to ten visible messages without waiting, with their attributes. They stay
// in the queue, hidden for its visibility timeout.
func (s *Server) Receive(t testing.TB, queueURL string) []types.Message {
	t.Helper()
	out, err := s.Client.ReceiveMessage(context.Background(), &awssqs.ReceiveMessageInput{
		QueueUrl: aws.String(queueURL), MaxNumberOfMessages: 10, MessageAttributeNames: []string{"All"},
		WaitTimeSeconds: 0,
	})
	if err != nil {
		t.Fatalf("sqstest: receiving from %s: %v", queueURL, err)
	}
	return out.Messages
}

// Counts returns a queue's ApproximateNumberOfMessages and ApproximateNumberOfMessagesNotVisible.
// goaws counts every message still in the queue in the first, in flight or not.
func (s *Server) Counts(t testing.TB, queueURL string) (all, hidden int) {
	t.Helper()
	out, err := s.Client.GetQueueAttributes(context.Background(), &awssqs.GetQueueAttributesInput{
		QueueUrl: aws.String(queueURL),
		AttributeNames: []types.QueueAttributeName{
			types.QueueAttributeNameApproximateNumberOfMessages, types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		},
	})
	if err != nil {
		t.Fatalf("sqstest: attributes of %s: %v", queueURL, err)
	}
	all, _ = strconv.Atoi(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessages)])
	hidden, _ = strconv.Atoi(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible)])
	return all, hidden
}
