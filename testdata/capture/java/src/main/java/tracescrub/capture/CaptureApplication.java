package tracescrub.capture;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Map;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.springframework.beans.factory.annotation.Value;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.boot.context.event.ApplicationReadyEvent;
import org.springframework.context.annotation.Bean;
import org.springframework.context.event.EventListener;
import org.springframework.kafka.annotation.EnableKafka;
import org.springframework.kafka.config.ConcurrentKafkaListenerContainerFactory;
import org.springframework.kafka.core.DefaultKafkaConsumerFactory;
import org.springframework.kafka.core.DefaultKafkaProducerFactory;
import org.springframework.kafka.core.KafkaTemplate;

/**
 * A small Spring Boot service that exists only to be recorded under the
 * OpenTelemetry Java agent (testdata/capture/regenerate.sh). It has no
 * tracing code of its own: every span comes from the agent's
 * auto-instrumentation (Spring MVC, Tomcat, JDBC, Lettuce, Kafka, the JDK
 * HTTP client).
 *
 * Configuration from the environment (see application.properties):
 * CAPTURE_LISTEN_PORT, CAPTURE_PORT_FILE, CAPTURE_PG_JDBC, CAPTURE_REDIS_PORT,
 * CAPTURE_KAFKA.
 */
@SpringBootApplication
@EnableKafka
public class CaptureApplication {

    public static void main(String[] args) {
        SpringApplication.run(CaptureApplication.class, args);
    }

    /** Writes the port Tomcat listens on once everything (Kafka listeners too) is up. */
    @EventListener
    public void ready(ApplicationReadyEvent event) throws Exception {
        String file = System.getenv("CAPTURE_PORT_FILE");
        if (file == null || file.isEmpty()) {
            return;
        }
        String port = event.getApplicationContext().getEnvironment().getProperty("local.server.port");
        Path tmp = Path.of(file + ".tmp");
        Files.writeString(tmp, port, StandardCharsets.UTF_8);
        Files.move(tmp, Path.of(file), StandardCopyOption.ATOMIC_MOVE);
    }

    // Two producers and two listener factories: record keys as String and as byte[].

    @Bean
    public KafkaTemplate<String, String> stringKeyTemplate(@Value("${spring.kafka.bootstrap-servers}") String servers) {
        return new KafkaTemplate<>(new DefaultKafkaProducerFactory<>(Map.of(
                ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, servers,
                ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class,
                ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class)));
    }

    @Bean
    public KafkaTemplate<byte[], String> bytesKeyTemplate(@Value("${spring.kafka.bootstrap-servers}") String servers) {
        return new KafkaTemplate<>(new DefaultKafkaProducerFactory<>(Map.of(
                ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, servers,
                ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class,
                ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class)));
    }

    @Bean
    public ConcurrentKafkaListenerContainerFactory<String, String> kafkaListenerContainerFactory(
            @Value("${spring.kafka.bootstrap-servers}") String servers) {
        ConcurrentKafkaListenerContainerFactory<String, String> f = new ConcurrentKafkaListenerContainerFactory<>();
        f.setConsumerFactory(new DefaultKafkaConsumerFactory<>(consumerProps(servers, StringDeserializer.class)));
        return f;
    }

    @Bean
    public ConcurrentKafkaListenerContainerFactory<byte[], String> bytesListenerFactory(
            @Value("${spring.kafka.bootstrap-servers}") String servers) {
        ConcurrentKafkaListenerContainerFactory<byte[], String> f = new ConcurrentKafkaListenerContainerFactory<>();
        f.setConsumerFactory(new DefaultKafkaConsumerFactory<>(consumerProps(servers, ByteArrayDeserializer.class)));
        return f;
    }

    private static Map<String, Object> consumerProps(String servers, Class<?> keyDeserializer) {
        return Map.of(
                ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, servers,
                ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, keyDeserializer,
                ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class,
                ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest",
                ConsumerConfig.MAX_POLL_RECORDS_CONFIG, 10);
    }
}
