package pubsubtest

import (
	"context"
	"sync"
	"testing"

	gpubsub "cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"

	"github.com/sluice-gw/sluice/ingest/broker/pubsub"
	"github.com/sluice-gw/sluice/model"
)

// Project is the project every resource lives in.
const Project = "sluice-test"

// Server is a running fake and an admin client for it.
type Server struct {
	Fake   *pstest.Server
	Client *gpubsub.Client

	// mu serializes reads of the fake's message records: Fake.Message and Fake.Messages refresh
	// the counters of the records they return in place.
	mu sync.Mutex
}

// Start serves a fake until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	fake := pstest.NewServerWithAddress("127.0.0.1:0")
	t.Cleanup(func() { fake.Close() })
	section := model.PubSubSource{ProjectID: Project, Endpoint: fake.Addr}
	client, err := gpubsub.NewClient(context.Background(), Project, pubsub.ClientOptions(&section)...)
	if err != nil {
		t.Fatalf("pubsubtest: client: %v", err)
	}
	t.Cleanup(func() { client.Close() })
	return &Server{Fake: fake, Client: client}
}

// TopicName and SubscriptionName are full resource names in Project.
func TopicName(id string) string        { return "projects/" + Project + "/topics/" + id }
func SubscriptionName(id string) string { return "projects/" + Project + "/subscriptions/" + id }

// CreateTopic creates a topic.
func (s *Server) CreateTopic(t testing.TB, id string) {
	t.Helper()
	if _, err := s.Client.TopicAdminClient.CreateTopic(context.Background(), &pubsubpb.Topic{Name: TopicName(id)}); err != nil {
		t.Fatalf("pubsubtest: creating topic %s: %v", id, err)
	}
}

// CreateSubscription creates a subscription to topic with a 10 s ack deadline (the minimum).
func (s *Server) CreateSubscription(t testing.TB, topic, id string) {
	t.Helper()
	_, err := s.Client.SubscriptionAdminClient.CreateSubscription(context.Background(), &pubsubpb.Subscription{
		Name: SubscriptionName(id), Topic: TopicName(topic), AckDeadlineSeconds: 10,
	})
	if err != nil {
		t.Fatalf("pubsubtest: creating subscription %s: %v", id, err)
	}
}

// Publish publishes one message to topic and returns its id.
func (s *Server) Publish(topic string, data []byte, attrs map[string]string) string {
	return s.Fake.Publish(TopicName(topic), data, attrs)
}

// Published returns copies of the messages published to topic so far.
func (s *Server) Published(topic string) []pstest.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []pstest.Message
	for _, m := range s.Fake.Messages() {
		if m.Topic == TopicName(topic) {
			out = append(out, *m)
		}
	}
	return out
}

// Acks returns how many times the message was acknowledged.
func (s *Server) Acks(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.Fake.Message(id).Acks
}

// Section is a source's pubsub section for subscription on this fake.
func (s *Server) Section(subscription, deadLetterTopic string) *model.PubSubSource {
	return &model.PubSubSource{ProjectID: Project, Subscription: subscription, Endpoint: s.Fake.Addr, DeadLetterTopic: deadLetterTopic}
}
