#!/bin/sh
# One node of the deployment's three-node KRaft cluster, in the apache/kafka image:
# the same settings as `syncbus kafka start --nodes 3 --tls` writes (broker and
# controller in one JVM, replication 3, min.insync.replicas 2, SASL/SCRAM-SHA-512
# over TLS for clients, the StandardAuthorizer with no ACL meaning no access, one
# super user), the storage formatted once with the admin's SCRAM credential.
set -eu
: "${NODE_ID:?}" "${CLUSTER_ID:?}" "${SYNCBUS_ADMIN_PASSWORD:?set it in compose/.env}"
ADMIN=syncbus-admin
PROPS=/var/lib/kafka/server.properties
JAAS_SCRAM="org.apache.kafka.common.security.scram.ScramLoginModule required username=\"$ADMIN\" password=\"$SYNCBUS_ADMIN_PASSWORD\";"
JAAS_PLAIN="org.apache.kafka.common.security.plain.PlainLoginModule required username=\"$ADMIN\" password=\"$SYNCBUS_ADMIN_PASSWORD\" user_$ADMIN=\"$SYNCBUS_ADMIN_PASSWORD\";"
umask 077
cat > "$PROPS" <<PROPERTIES
process.roles=broker,controller
node.id=$NODE_ID
controller.quorum.voters=1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093
listeners=CLIENT://0.0.0.0:9092,CONTROLLER://0.0.0.0:9093
advertised.listeners=CLIENT://kafka-$NODE_ID:9092
controller.listener.names=CONTROLLER
inter.broker.listener.name=CLIENT
listener.security.protocol.map=CONTROLLER:SASL_PLAINTEXT,CLIENT:SASL_SSL
listener.name.client.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.controller.sasl.enabled.mechanisms=PLAIN
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
sasl.mechanism.controller.protocol=PLAIN
listener.name.client.scram-sha-512.sasl.jaas.config=$JAAS_SCRAM
listener.name.controller.plain.sasl.jaas.config=$JAAS_PLAIN
listener.name.client.ssl.keystore.type=PKCS12
listener.name.client.ssl.keystore.location=/tls/kafka-$NODE_ID.p12
listener.name.client.ssl.keystore.password=$SYNCBUS_ADMIN_PASSWORD
listener.name.client.ssl.truststore.type=PEM
listener.name.client.ssl.truststore.location=/tls/ca.pem
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:$ADMIN
log.dirs=/var/lib/kafka/data
num.partitions=1
auto.create.topics.enable=false
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
group.initial.rebalance.delay.ms=0
log.retention.hours=168
PROPERTIES
/opt/kafka/bin/kafka-storage.sh format --ignore-formatted -t "$CLUSTER_ID" -c "$PROPS" \
  --add-scram "SCRAM-SHA-512=[name=$ADMIN,password=$SYNCBUS_ADMIN_PASSWORD]"
exec /opt/kafka/bin/kafka-server-start.sh "$PROPS"
