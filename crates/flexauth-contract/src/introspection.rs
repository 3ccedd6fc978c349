//! The resource servers that may introspect (`IntrospectionClientRepository`).

use super::*;

scenarios! { $ introspection_scenarios;
    pub async fn introspection_clients_are_listed_oldest_first_and_deleted_once<P: Backend, I: Inspect>(
        store: &P,
        _inspect: &I,
    ) {
        let client = |id: u128, name: &str, at: OffsetDateTime| IntrospectionClient {
            id: IntrospectionClientId::from_uuid(Uuid::from_u128(id)),
            name: ClientName::parse(name).unwrap(),
            secret_hash: TokenHash::of(name.as_bytes()),
            created_at: at,
        };
        let (older, newer) = (client(2, "billing API", NOW - Duration::days(1)), client(1, "reports API", NOW));
        IntrospectionClientRepository::create(store, &newer).await.unwrap();
        IntrospectionClientRepository::create(store, &older).await.unwrap();
        assert_eq!(IntrospectionClientRepository::list(store).await.unwrap(), vec![older.clone(), newer.clone()]);
        // The id and the digest are unique.
        assert!(IntrospectionClientRepository::create(store, &client(1, "another", NOW)).await.is_err());
        assert!(IntrospectionClientRepository::create(
            store,
            &IntrospectionClient { id: IntrospectionClientId::from_uuid(Uuid::from_u128(3)), ..older.clone() }
        )
        .await
        .is_err());

        assert!(IntrospectionClientRepository::delete(store, older.id).await.unwrap());
        assert!(!IntrospectionClientRepository::delete(store, older.id).await.unwrap());
        assert_eq!(IntrospectionClientRepository::list(store).await.unwrap(), vec![newer]);
    }
}
